package conformance

// ValidateReportClosed is ValidateReport that also refuses fields the
// schema does not describe: the tests use it to show that the schema
// describes every field a report has.
func ValidateReportClosed(report []byte) error { return validateReport(report, true) }
