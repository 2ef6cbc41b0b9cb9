package s3

// SetBeforePlanWrite makes f run between PlanUpload's read of the plan and
// its conditional write, so that a test can land a competing write there.
func SetBeforePlanWrite(s *Store, f func(user, key string)) { s.beforePlanWrite = f }
