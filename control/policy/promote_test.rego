# Tests of the default policy, run by `promote policy test` (as `opa test` would).
package promote_test

import rego.v1

import data.promote

app := "blake3:1111111111111111111111111111111111111111111111111111111111111111"

lib := "blake3:2222222222222222222222222222222222222222222222222222222222222222"

good := {
	"capsule": {"schema": "promote-capsule/v1", "targets": [{"path": "release/app.whl", "digest": app, "size": 3}]},
	"check_report": {
		"schema": "check-report/v1", "status": "pass",
		"subjects": [{"digest": app, "size": 3}],
		"checks": [{"name": "unit", "status": "pass"}],
	},
	"current": {"release/app.whl": null},
	"allow_list": ["release/"],
	"ledger": {"seq": 0, "head": null},
}

test_allow_with_complete_evidence if {
	promote.allow with input as good
	count(promote.deny) == 0 with input as good
}

test_deny_check_status_fail if {
	report := object.union(good.check_report, {"status": "fail"})
	not promote.allow with input as object.union(good, {"check_report": report})
	reasons := promote.deny with input as object.union(good, {"check_report": report})
	reasons == {"the CHECK report's status is not pass"}
}

test_deny_failed_check if {
	report := object.union(good.check_report, {"checks": [{"name": "lint", "status": "fail"}]})
	reasons := promote.deny with input as object.union(good, {"check_report": report})
	reasons == {"check \"lint\" failed"}
}

test_deny_no_checks if {
	report := object.union(good.check_report, {"checks": []})
	not promote.allow with input as object.union(good, {"check_report": report})
	reasons := promote.deny with input as object.union(good, {"check_report": report})
	reasons == {"the CHECK report ran no checks"}
}

test_deny_uncovered_target if {
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "release/lib.so", "digest": lib, "size": 3}]}
	reasons := promote.deny with input as object.union(good, {"capsule": capsule, "current": {"release/lib.so": null}})
	reasons == {sprintf("target release/lib.so (%s) is not covered by the CHECK report", [lib])}
}

test_deny_same_digest_other_size if {
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "release/app.whl", "digest": app, "size": 4}]}
	not promote.allow with input as object.union(good, {"capsule": capsule})
	reasons := promote.deny with input as object.union(good, {"capsule": capsule})
	reasons == {sprintf("target release/app.whl (%s) is not covered by the CHECK report", [app])}
}

test_deny_outside_allow_list if {
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "src/app.whl", "digest": app, "size": 3}]}
	reasons := promote.deny with input as object.union(good, {"capsule": capsule, "current": {"src/app.whl": null}})
	reasons == {"target src/app.whl is outside the allow-list"}
}

test_deny_no_op if {
	reasons := promote.deny with input as object.union(good, {"current": {"release/app.whl": {"digest": app, "size": 3}}})
	reasons == {sprintf("target release/app.whl already holds %s: nothing to promote", [app])}
}

test_undefined_input_is_not_allow if {
	not promote.allow with input as {}
}

test_deny_reasons_add_up if {
	report := object.union(good.check_report, {"status": "fail", "checks": [{"name": "lint", "status": "fail"}]})
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "src/lib.so", "digest": lib, "size": 3}]}
	reasons := promote.deny with input as object.union(good, {"check_report": report, "capsule": capsule, "current": {"src/lib.so": null}})
	reasons == {
		"the CHECK report's status is not pass",
		"check \"lint\" failed",
		sprintf("target src/lib.so (%s) is not covered by the CHECK report", [lib]),
		"target src/lib.so is outside the allow-list",
	}
}

# allow needs every target covered and allow-listed, not just one of them
test_deny_one_target_of_two if {
	capsule := {"schema": "promote-capsule/v1", "targets": [
		{"path": "release/app.whl", "digest": app, "size": 3},
		{"path": "src/app.whl", "digest": app, "size": 3},
	]}
	inp := object.union(good, {"capsule": capsule, "current": {"release/app.whl": null, "src/app.whl": null}})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {"target src/app.whl is outside the allow-list"}
}

test_allow_two_targets if {
	capsule := {"schema": "promote-capsule/v1", "targets": [
		{"path": "release/app.whl", "digest": app, "size": 3},
		{"path": "release/lib.so", "digest": lib, "size": 3},
	]}
	report := object.union(good.check_report, {"subjects": [{"digest": app, "size": 3}, {"digest": lib, "size": 3}]})
	inp := object.union(good, {"capsule": capsule, "check_report": report, "current": {"release/app.whl": null, "release/lib.so": null}})
	promote.allow with input as inp
}

test_allow_replacing_another_digest if {
	promote.allow with input as object.union(good, {"current": {"release/app.whl": {"digest": lib, "size": 3}}})
}

test_allow_with_a_skipped_check if {
	report := object.union(good.check_report, {"checks": [{"name": "unit", "status": "pass"}, {"name": "slow", "status": "skip"}]})
	promote.allow with input as object.union(good, {"check_report": report})
}

test_deny_all_checks_skipped if {
	report := object.union(good.check_report, {"checks": [{"name": "unit", "status": "skip"}]})
	reasons := promote.deny with input as object.union(good, {"check_report": report})
	reasons == {"every check of the CHECK report was skipped"}
}

# no targets: no deny reason fires, and allow still needs positive evidence
test_no_targets_is_not_allow if {
	capsule := {"schema": "promote-capsule/v1", "targets": []}
	not promote.allow with input as object.union(good, {"capsule": capsule, "current": {}})
	count(promote.deny) == 0 with input as object.union(good, {"capsule": capsule, "current": {}})
}

test_allow_delete if {
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "release/app.whl", "delete": true}]}
	inp := object.union(good, {"capsule": capsule, "current": {"release/app.whl": {"digest": app, "size": 3}}})
	promote.allow with input as inp
	count(promote.deny) == 0 with input as inp
}

test_deny_delete_outside_allow_list if {
	capsule := {"schema": "promote-capsule/v1", "targets": [{"path": "src/app.whl", "delete": true}]}
	inp := object.union(good, {"capsule": capsule, "current": {"src/app.whl": {"digest": app, "size": 3}}})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {"target src/app.whl is outside the allow-list"}
}
