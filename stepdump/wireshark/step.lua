-- STEP (Simple Transfer and Exchange Protocol) dissector for Wireshark.
--
-- A STEP frame is: JSON length (uint32, big-endian), binary length (uint32,
-- big-endian), a JSON object, then raw binary. Frames are cut out of the TCP
-- stream with dissect_tcp_pdus, so frames split over segments, and several
-- frames in one segment, both decode.
--
-- Use:   wireshark -X lua_script:step.lua capture.pcapng
--        tshark -X lua_script:step.lua -r capture.pcap -Y step
-- or copy this file to the personal plugins folder (Help > About >
-- Folders). Port 1379 is registered; use "Decode As..." (or
-- tshark -d tcp.port==8000,step) for another port.
--
-- Part of stepkit; stepkit dump decodes the same captures from the command line.

local step = Proto("step", "Simple Transfer and Exchange Protocol")

local f = {
	json_len    = ProtoField.uint32("step.json_len", "JSON length", base.DEC),
	binary_len  = ProtoField.uint32("step.binary_len", "Binary length", base.DEC),
	json        = ProtoField.string("step.json", "JSON"),
	binary      = ProtoField.bytes("step.binary", "Binary"),
	operation   = ProtoField.string("step.operation", "Operation"),
	direction   = ProtoField.string("step.direction", "Direction"),
	type        = ProtoField.string("step.type", "Type"),
	status      = ProtoField.int32("step.status", "Status", base.DEC),
	status_msg  = ProtoField.string("step.status_msg", "Status message"),
	key         = ProtoField.string("step.key", "Key"),
	block_index = ProtoField.int32("step.block_index", "Block index", base.DEC),
	size        = ProtoField.string("step.size", "Size"),
	total_block = ProtoField.string("step.total_block", "Total blocks"),
	block_size  = ProtoField.string("step.block_size", "Block size"),
	username    = ProtoField.string("step.username", "Username"),
	token       = ProtoField.string("step.token", "Token"),
	md5         = ProtoField.string("step.md5", "MD5"),
	summary     = ProtoField.string("step.summary", "Summary (operation/status)"),
	real_json_len = ProtoField.uint32("step.real_json_len", "JSON length in bytes", base.DEC),
}
step.fields = f

local ef = {
	char_count = ProtoExpert.new("step.char_count", "JSON length counts characters, not bytes",
		expert.group.PROTOCOL, expert.severity.WARN),
	bad_json   = ProtoExpert.new("step.bad_json", "JSON part does not decode",
		expert.group.MALFORMED, expert.severity.ERROR),
	error_status = ProtoExpert.new("step.error_status", "Error status",
		expert.group.RESPONSE_CODE, expert.severity.NOTE),
}
step.experts = ef

local HEADER = 8
local MAX_JSON = 8 * 1024 * 1024
local MAX_BINARY = 8 * 1024 * 1024

-- A small JSON reader: the top-level object's members, scalars only
-- (nested values are skipped). Returns nil when the text is not an object.
local function utf8_char(cp)
	if cp < 0x80 then return string.char(cp) end
	if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
	if cp < 0x10000 then
		return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
	end
	return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
		0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function skip_ws(s, i)
	return (s:find("[^ \t\r\n]", i)) or (#s + 1)
end

local escapes = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

local function read_string(s, i) -- s:sub(i,i) == '"'
	local out = {}
	i = i + 1
	while i <= #s do
		local c = s:sub(i, i)
		if c == '"' then return table.concat(out), i + 1 end
		if c == '\\' then
			local e = s:sub(i + 1, i + 1)
			if e == 'u' then
				local hex = s:sub(i + 2, i + 5)
				local cp = tonumber(hex, 16)
				if not cp or #hex ~= 4 then return nil end
				i = i + 6
				if cp >= 0xD800 and cp <= 0xDBFF and s:sub(i, i + 1) == "\\u" then
					local lo = tonumber(s:sub(i + 2, i + 5), 16)
					if lo and lo >= 0xDC00 and lo <= 0xDFFF then
						cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
						i = i + 6
					end
				end
				out[#out + 1] = utf8_char(cp)
			elseif escapes[e] then
				out[#out + 1] = escapes[e]
				i = i + 2
			else
				return nil
			end
		else
			local j = s:find('["\\]', i)
			if not j then return nil end
			out[#out + 1] = s:sub(i, j - 1)
			i = j
		end
	end
	return nil
end

local function skip_value(s, i)
	local c = s:sub(i, i)
	if c == '"' then
		local _, j = read_string(s, i)
		return j
	end
	if c == '{' or c == '[' then
		local depth = 0
		while i <= #s do
			c = s:sub(i, i)
			if c == '"' then
				local _, j = read_string(s, i)
				if not j then return nil end
				i = j
			else
				if c == '{' or c == '[' then depth = depth + 1 end
				if c == '}' or c == ']' then
					depth = depth - 1
					if depth == 0 then return i + 1 end
				end
				i = i + 1
			end
		end
		return nil
	end
	local j = s:find("[,}%] \t\r\n]", i)
	if not j or j == i then return nil end
	return j
end

local function parse_object(s)
	local obj = {}
	local i = skip_ws(s, 1)
	if s:sub(i, i) ~= '{' then return nil end
	i = skip_ws(s, i + 1)
	if s:sub(i, i) == '}' then
		return (skip_ws(s, i + 1) > #s) and obj or nil
	end
	while true do
		if s:sub(i, i) ~= '"' then return nil end
		local k, j = read_string(s, i)
		if not k then return nil end
		i = skip_ws(s, j)
		if s:sub(i, i) ~= ':' then return nil end
		i = skip_ws(s, i + 1)
		local c = s:sub(i, i)
		if c == '"' then
			local v, j2 = read_string(s, i)
			if not v then return nil end
			obj[k] = v
			i = j2
		else
			local j2 = skip_value(s, i)
			if not j2 then return nil end
			local raw = s:sub(i, j2 - 1)
			if raw:match("^%-?%d+$") then
				obj[k] = tonumber(raw)
			elseif c ~= '{' and c ~= '[' then
				obj[k] = raw -- true, false, null, or a number with a fraction
			end
			i = j2
		end
		i = skip_ws(s, i)
		c = s:sub(i, i)
		if c == '}' then
			return (skip_ws(s, i + 1) > #s) and obj or nil
		end
		if c ~= ',' then return nil end
		i = skip_ws(s, i + 1)
	end
end

-- The byte length of the first n UTF-8 characters of s, or nil when s
-- holds fewer.
local function chars_to_bytes(s, n)
	local i = 1
	for _ = 1, n do
		if i > #s then return nil end
		local b = s:byte(i)
		if b < 0x80 then i = i + 1
		elseif b >= 0xF0 then i = i + 4
		elseif b >= 0xE0 then i = i + 3
		elseif b >= 0xC0 then i = i + 2
		else return nil end
	end
	if i - 1 > #s then return nil end
	return i - 1
end

-- json_length returns the JSON part's length in bytes: the header's, unless
-- the header counted characters (the course reference server's bug) and
-- the bytes at hand show it.
local function json_length(tvb, offset, jlen)
	local avail = tvb:len() - offset - HEADER
	if avail < jlen or jlen == 0 then return jlen, false end
	local text = tvb:raw(offset + HEADER, jlen)
	if not text:find("[\128-\255]") or parse_object(text) then return jlen, false end
	local more = tvb:raw(offset + HEADER, math.min(avail, jlen * 4))
	local n = chars_to_bytes(more, jlen)
	if n and n > jlen and parse_object(more:sub(1, n)) then return n, true end
	return jlen, false
end

local function pdu_len(tvb, pinfo, offset)
	local jlen = tvb(offset, 4):uint()
	local blen = tvb(offset + 4, 4):uint()
	local real = json_length(tvb, offset, jlen)
	return HEADER + real + blen
end

local function text_of(v)
	if v == nil then return nil end
	return tostring(v)
end

local function dissect_pdu(tvb, pinfo, tree)
	local jlen = tvb(0, 4):uint()
	local blen = tvb(4, 4):uint()
	local real, charcount = json_length(tvb, 0, jlen)
	local t = tree:add(step, tvb(), "STEP")
	t:add(f.json_len, tvb(0, 4))
	t:add(f.binary_len, tvb(4, 4))
	if charcount then
		t:add(f.real_json_len, tvb(0, 4), real)
		t:add_proto_expert_info(ef.char_count,
			string.format("JSON length %d counts characters; the JSON text is %d bytes", jlen, real))
	end
	local jr = tvb(HEADER, real)
	local text = jr:raw()
	t:add(f.json, jr, text)
	if blen > 0 then
		t:add(f.binary, tvb(HEADER + real, blen))
	end
	local obj = parse_object(text)
	local summary
	if not obj then
		t:add_proto_expert_info(ef.bad_json)
		summary = "?/-"
		pinfo.cols.info:append(" [undecodable STEP frame]")
	else
		local op = text_of(obj.operation) or ""
		local st = obj.status
		if obj.operation ~= nil then t:add(f.operation, jr, op) end
		if obj.direction ~= nil then t:add(f.direction, jr, text_of(obj.direction)) end
		if obj.type ~= nil then t:add(f.type, jr, text_of(obj.type)) end
		if type(st) == "number" then
			t:add(f.status, jr, st)
			if st ~= 200 then t:add_proto_expert_info(ef.error_status, "status " .. st) end
		end
		if obj.status_msg ~= nil then t:add(f.status_msg, jr, text_of(obj.status_msg)) end
		if obj.key ~= nil then t:add(f.key, jr, text_of(obj.key)) end
		if type(obj.block_index) == "number" then t:add(f.block_index, jr, obj.block_index) end
		if obj.size ~= nil then t:add(f.size, jr, text_of(obj.size)) end
		if obj.total_block ~= nil then t:add(f.total_block, jr, text_of(obj.total_block)) end
		if obj.block_size ~= nil then t:add(f.block_size, jr, text_of(obj.block_size)) end
		if obj.username ~= nil then t:add(f.username, jr, text_of(obj.username)) end
		if obj.token ~= nil then t:add(f.token, jr, text_of(obj.token)) end
		if obj.md5 ~= nil then t:add(f.md5, jr, text_of(obj.md5)) end
		local sts = (type(st) == "number") and tostring(st) or "-"
		summary = op .. "/" .. sts
		local info = op .. " " .. (text_of(obj.type) or "")
		if type(st) == "number" then
			info = info .. " " .. sts .. " " .. (text_of(obj.status_msg) or "")
		else
			info = info .. " " .. (text_of(obj.direction) or "")
		end
		if obj.key ~= nil then info = info .. " key=" .. text_of(obj.key) end
		if type(obj.block_index) == "number" then info = info .. " block=" .. obj.block_index end
		if blen > 0 then info = info .. " +" .. blen .. "B" end
		pinfo.cols.info:append(" [" .. info .. "]")
	end
	t:add(f.summary, tvb(0, 8), summary)
	t:append_text(", " .. summary .. string.format(", JSON %d, binary %d", real, blen))
	pinfo.cols.protocol = "STEP"
	return HEADER + real + blen
end

-- plausible reports whether the bytes at hand start like a STEP frame:
-- a capture that begins mid-connection (or after lost segments) shows
-- segments that begin inside a frame, and those are left as TCP data.
-- strict asks for a JSON object's first bytes; otherwise a frame whose
-- JSON part is text of another kind (a malformed request) is still shown.
local function plausible(tvb, strict)
	if tvb:len() < HEADER + 2 then return tvb:len() >= HEADER end
	local jlen = tvb(0, 4):uint()
	local blen = tvb(4, 4):uint()
	if jlen > MAX_JSON or blen > MAX_BINARY then return false end
	if jlen == 0 then return not strict end
	local c = tvb(8, 1):uint()
	local d = tvb(9, 1):uint()
	if c == 0x7B and (d == 0x22 or d == 0x7D or d == 0x20 or d == 0x0A or d == 0x0D or d == 0x09) then
		return jlen >= 2
	end
	return not strict and c >= 0x20 and c < 0x7F and d >= 0x20 and d < 0x7F
end

function step.dissector(tvb, pinfo, tree)
	if tvb:len() == 0 or not plausible(tvb, false) then return 0 end
	pinfo.cols.info:clear()
	pinfo.cols.protocol = "STEP"
	dissect_tcp_pdus(tvb, tree, HEADER, pdu_len, dissect_pdu, true)
	return tvb:len()
end

-- On other ports, a segment that starts with a plausible header followed
-- by a STEP field name is taken as STEP.
step.prefs.heuristic = Pref.bool("Find STEP on any TCP port", true,
	"Take a TCP segment on a port other than 1379 as STEP when it starts like a STEP frame")

local function heuristic(tvb, pinfo, tree)
	if not step.prefs.heuristic then return false end
	if tvb:len() < HEADER + 12 or not plausible(tvb, true) then return false end
	local head = tvb:raw(HEADER, math.min(tvb:len() - HEADER, 64))
	if not (head:find('"operation"', 1, true) or head:find('"direction"', 1, true)) then return false end
	step.dissector(tvb, pinfo, tree)
	pinfo.conversation = step
	return true
end

DissectorTable.get("tcp.port"):add(1379, step)
step:register_heuristic("tcp", heuristic)
