# Tests of the default policy, run by `promote policy test` (as `opa test` would).
package promote_test

import rego.v1

import data.promote

app := "blake3:1111111111111111111111111111111111111111111111111111111111111111"

lib := "blake3:2222222222222222222222222222222222222222222222222222222222222222"

env := "blake3:3333333333333333333333333333333333333333333333333333333333333333"

env2 := "blake3:4444444444444444444444444444444444444444444444444444444444444444"

check_type := "https://cas-promote.invalid/check-report/v1"

app_target := {"path": "release/app.whl", "digest": app, "size": 3}

lib_target := {"path": "release/lib.so", "digest": lib, "size": 3}

# A CHECK predicate the checker signed, covering `targets` (each one subject).
signed_check(digest, targets, predicate) := {
	"digest": digest,
	"signers": ["ci-checker"],
	"roles": ["checker"],
	"predicate_type": check_type,
	"subjects": [s |
		some t in targets
		s := {"name": t.path, "digest": {"blake3": substring(t.digest, 7, -1)}, "targets": [t]}
	],
	"predicate": predicate,
}

passed := {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]}

good := {
	"schema": "promote-policy-input/v2",
	"kind": "release",
	"capsule": {"schema": "promote-capsule/v2", "targets": [app_target]},
	"attestations": [signed_check(env, [app_target], passed)],
	"current": {"release/app.whl": null},
	"allow_list": ["release/"],
	"ledger": {"seq": 0, "head": null},
	"control": null,
}

with_check(predicate) := object.union(good, {"attestations": [signed_check(env, [app_target], predicate)]})

test_allow_with_complete_evidence if {
	promote.allow with input as good
	count(promote.deny) == 0 with input as good
}

# the forged report: the same predicate, signed by a builder (or by nobody)
test_deny_a_check_not_signed_by_the_checker if {
	att := object.union(signed_check(env, [app_target], passed), {"signers": ["ci-builder"], "roles": ["builder"]})
	inp := object.union(good, {"attestations": [att]})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app])}
}

test_deny_unsigned_evidence if {
	att := object.union(signed_check(env, [app_target], passed), {"signers": [], "roles": []})
	inp := object.union(good, {"attestations": [att]})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {
		sprintf("attestation %s is unsigned: no trusted signer", [env]),
		sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app]),
	}
}

test_deny_a_subject_matched_to_no_target if {
	att := object.union(signed_check(env, [app_target], passed), {"subjects": [{"name": "x", "digest": {"blake3": "11"}, "targets": []}]})
	not promote.allow with input as object.union(good, {"attestations": [att]})
}

test_deny_check_status_fail if {
	inp := with_check(object.union(passed, {"status": "fail"}))
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {
		sprintf("the CHECK report %s has status fail, not pass", [env]),
		sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app]),
	}
}

test_deny_failed_check if {
	reasons := promote.deny with input as with_check({"status": "pass", "checks": [{"name": "lint", "status": "fail"}]})
	reasons == {"check \"lint\" failed"}
}

test_deny_no_checks if {
	inp := with_check({"status": "pass", "checks": []})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {sprintf("the CHECK report %s ran no checks", [env])}
}

# a failing CHECK denies whoever signed it, even beside a passing one
test_deny_a_failing_check_beside_a_passing_one if {
	bad := object.union(signed_check(env2, [app_target], {"status": "fail", "checks": [{"name": "fuzz", "status": "fail"}]}), {"signers": ["ci-builder"], "roles": ["builder"]})
	inp := object.union(good, {"attestations": [signed_check(env, [app_target], passed), bad]})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {sprintf("the CHECK report %s has status fail, not pass", [env2]), "check \"fuzz\" failed"}
}

test_deny_uncovered_target if {
	capsule := {"schema": "promote-capsule/v2", "targets": [lib_target]}
	reasons := promote.deny with input as object.union(good, {"capsule": capsule, "current": {"release/lib.so": null}})
	reasons == {sprintf("target release/lib.so (%s) is not covered by a passing CHECK signed by the checker role", [lib])}
}

test_deny_same_digest_other_size if {
	target := object.union(app_target, {"size": 4})
	capsule := {"schema": "promote-capsule/v2", "targets": [target]}
	not promote.allow with input as object.union(good, {"capsule": capsule})
	reasons := promote.deny with input as object.union(good, {"capsule": capsule})
	reasons == {sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app])}
}

# coverage is by path too: the same bytes at another path are not what was matched
test_deny_same_bytes_other_path if {
	target := object.union(app_target, {"path": "release/other.whl"})
	inp := object.union(good, {"capsule": {"schema": "promote-capsule/v2", "targets": [target]}, "current": {"release/other.whl": null}})
	not promote.allow with input as inp
}

test_deny_outside_allow_list if {
	target := object.union(app_target, {"path": "src/app.whl"})
	capsule := {"schema": "promote-capsule/v2", "targets": [target]}
	att := signed_check(env, [target], passed)
	reasons := promote.deny with input as object.union(good, {"capsule": capsule, "attestations": [att], "current": {"src/app.whl": null}})
	reasons == {"target src/app.whl is outside the allow-list"}
}

test_deny_no_op if {
	reasons := promote.deny with input as object.union(good, {"current": {"release/app.whl": {"digest": app, "size": 3}}})
	reasons == {sprintf("target release/app.whl already holds %s: nothing to promote", [app])}
}

test_undefined_input_is_not_allow if {
	not promote.allow with input as {}
}

test_no_kind_is_not_allow if {
	not promote.allow with input as object.remove(good, ["kind"])
}

test_allow_two_targets if {
	capsule := {"schema": "promote-capsule/v2", "targets": [app_target, lib_target]}
	inp := object.union(good, {"capsule": capsule, "attestations": [signed_check(env, [app_target, lib_target], passed)], "current": {"release/app.whl": null, "release/lib.so": null}})
	promote.allow with input as inp
}

# allow needs every target covered and allow-listed, not just one of them
test_deny_one_target_of_two if {
	capsule := {"schema": "promote-capsule/v2", "targets": [app_target, lib_target]}
	inp := object.union(good, {"capsule": capsule, "current": {"release/app.whl": null, "release/lib.so": null}})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {sprintf("target release/lib.so (%s) is not covered by a passing CHECK signed by the checker role", [lib])}
}

test_allow_replacing_another_digest if {
	promote.allow with input as object.union(good, {"current": {"release/app.whl": {"digest": lib, "size": 3}}})
}

test_allow_with_a_skipped_check if {
	promote.allow with input as with_check({"status": "pass", "checks": [{"name": "unit", "status": "pass"}, {"name": "slow", "status": "skip"}]})
}

test_deny_all_checks_skipped if {
	reasons := promote.deny with input as with_check({"status": "pass", "checks": [{"name": "unit", "status": "skip"}]})
	reasons == {sprintf("every check of the CHECK report %s was skipped", [env])}
}

test_allow_an_in_toto_test_result if {
	att := object.union(signed_check(env, [app_target], {"result": "PASSED"}), {"predicate_type": "https://in-toto.io/attestation/test-result/v0.1"})
	promote.allow with input as object.union(good, {"attestations": [att]})
}

test_deny_a_failed_in_toto_test_result if {
	att := object.union(signed_check(env, [app_target], {"result": "FAILED"}), {"predicate_type": "https://in-toto.io/attestation/test-result/v0.1"})
	inp := object.union(good, {"attestations": [att]})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {
		sprintf("the test result %s is FAILED, not PASSED", [env]),
		sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app]),
	}
}

# other predicate types reach the policy but cover nothing
test_other_predicate_types_cover_nothing if {
	att := object.union(signed_check(env, [app_target], passed), {"predicate_type": "https://slsa.dev/provenance/v1"})
	not promote.allow with input as object.union(good, {"attestations": [att]})
}

# no targets: no deny reason fires, and allow still needs positive evidence
test_no_targets_is_not_allow if {
	capsule := {"schema": "promote-capsule/v2", "targets": []}
	not promote.allow with input as object.union(good, {"capsule": capsule, "current": {}})
	count(promote.deny) == 0 with input as object.union(good, {"capsule": capsule, "current": {}})
}

test_allow_delete if {
	capsule := {"schema": "promote-capsule/v2", "targets": [{"path": "release/app.whl", "delete": true}]}
	inp := object.union(good, {"capsule": capsule, "current": {"release/app.whl": {"digest": app, "size": 3}}})
	promote.allow with input as inp
	count(promote.deny) == 0 with input as inp
}

test_deny_delete_outside_allow_list if {
	capsule := {"schema": "promote-capsule/v2", "targets": [{"path": "src/app.whl", "delete": true}]}
	inp := object.union(good, {"capsule": capsule, "current": {"src/app.whl": {"digest": app, "size": 3}}})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {"target src/app.whl is outside the allow-list"}
}

# -- control promotions: a change of the pinned policy and trust roots ---------------

change := {"policy": app, "trust": lib}

control := {
	"schema": "promote-policy-input/v2",
	"kind": "control",
	"capsule": {"schema": "promote-capsule/v2", "kind": "control", "targets": []},
	"attestations": [{
		"digest": env,
		"signers": ["ops-admin"],
		"roles": ["admin"],
		"predicate_type": "https://cas-promote.invalid/control-change/v1",
		"subjects": [],
		"predicate": change,
	}],
	"current": {},
	"allow_list": ["release/"],
	"ledger": {"seq": 3, "head": env2},
	"control": {"policy": {"pinned": env, "new": app}, "trust": {"pinned": lib, "new": lib}},
}

test_allow_a_control_change_the_admin_signed if {
	promote.allow with input as control
	count(promote.deny) == 0 with input as control
}

test_deny_a_control_change_without_the_admin_role if {
	att := object.union(control.attestations[0], {"signers": ["ci-checker"], "roles": ["checker"]})
	inp := object.union(control, {"attestations": [att]})
	not promote.allow with input as inp
	reasons := promote.deny with input as inp
	reasons == {"a control change needs an attestation of it signed by the admin role"}
}

test_deny_a_control_change_naming_other_digests if {
	att := object.union(control.attestations[0], {"predicate": {"policy": lib, "trust": lib}})
	not promote.allow with input as object.union(control, {"attestations": [att]})
}

# a release capsule's evidence does not make a control change, nor the reverse
test_a_control_attestation_is_no_release_evidence if {
	inp := object.union(good, {"attestations": control.attestations})
	not promote.allow with input as inp
}

test_a_control_capsule_with_targets_is_not_allow if {
	inp := object.union(control, {"capsule": {"schema": "promote-capsule/v2", "kind": "control", "targets": [app_target]}})
	not promote.allow with input as inp
}

# -- type guards: a malformed input is a deny with the same reasons from every engine,
# never an engine error (tests/policy/test_differential.py compares regorus and OPA on
# thousands of such inputs) ---------------------------------------------------------

# allow and deny for an input, as the gate reads them
decision(inp) := [a, d] if {
	a := promote.allow with input as inp
	d := promote.deny with input as inp
}

uncovered_app := sprintf("target release/app.whl (%s) is not covered by a passing CHECK signed by the checker role", [app])

with_attestation(fields) := object.union(good, {"attestations": [object.union(signed_check(env, [app_target], passed), fields)]})

test_guard_input_not_an_object if {
	decision("release/app.whl") == [false, set()]
	decision([good]) == [false, set()]
	decision(null) == [false, set()]
}

test_guard_attestations_not_a_list if {
	decision(object.union(good, {"attestations": "x"})) == [false, {uncovered_app}]
	decision(object.union(good, {"attestations": {"a": good.attestations[0]}})) == [false, {uncovered_app}]
	decision(object.union(good, {"attestations": ["x", 1, null]})) == [false, {uncovered_app}]
}

test_guard_roles_not_a_list if {
	decision(with_attestation({"roles": "checker"})) == [false, {uncovered_app}]
}

test_guard_subjects_not_a_list if {
	decision(with_attestation({"subjects": "release/app.whl"})) == [false, {uncovered_app}]
	subject := {"name": "app.whl", "digest": {"blake3": "11"}, "targets": app_target}
	decision(with_attestation({"subjects": [subject]})) == [false, {uncovered_app}]
}

test_guard_signers_not_a_list if {
	decision(with_attestation({"signers": "ci-checker"})) == [false, {sprintf("attestation %s is unsigned: no trusted signer", [env])}]
	decision(with_attestation({"signers": "ci-checker", "digest": 7})) == [false, {"attestation <number> is unsigned: no trusted signer"}]
}

test_guard_checks_not_a_list if {
	no_checks := {sprintf("the CHECK report %s ran no checks", [env])}
	decision(with_check({"status": "pass", "checks": "unit"})) == [false, no_checks]
	decision(with_check({"status": "pass", "checks": {"unit": "pass"}})) == [false, no_checks]
	decision(with_check({"status": "pass"})) == [false, no_checks]
}

test_guard_reasons_name_the_type_of_what_is_not_a_string if {
	decision(with_check({"status": 1, "checks": [{"name": 2, "status": "fail"}]})) == [false, {
		sprintf("the CHECK report %s has status <number>, not pass", [env]),
		"check <number> failed",
		uncovered_app,
	}]
	att := with_attestation({"predicate_type": intoto_type, "predicate": {"result": ["PASSED"]}})
	decision(att) == [false, {sprintf("the test result %s is <array>, not PASSED", [env]), uncovered_app}]
}

intoto_type := "https://in-toto.io/attestation/test-result/v0.1"

test_guard_target_fields_of_other_types if {
	target := {"path": 5, "digest": null, "size": 3}
	inp := object.union(good, {"capsule": {"schema": "promote-capsule/v2", "targets": [target]}})
	decision(inp) == [false, {
		"target <number> (<null>) is not covered by a passing CHECK signed by the checker role",
		"target <number> is outside the allow-list",
	}]
}

test_guard_targets_not_a_list if {
	decision(object.union(good, {"capsule": {"schema": "promote-capsule/v2", "targets": app_target}})) == [false, set()]
	decision(object.union(control, {"capsule": {"kind": "control", "targets": "none"}})) == [false, set()]
}

test_guard_allow_list_not_a_list_of_strings if {
	outside := {"target release/app.whl is outside the allow-list"}
	decision(object.union(good, {"allow_list": "release/"})) == [false, outside]
	decision(object.union(good, {"allow_list": [1, null, ["release/"]]})) == [false, outside]
}

test_guard_current_not_an_object if {
	decision(object.union(good, {"current": "release/app.whl"})) == [true, set()]
	decision(object.union(good, {"current": [{"digest": app, "size": 3}]})) == [true, set()]
}

test_guard_control_with_attestations_not_a_list if {
	decision(object.union(control, {"attestations": "admin"})) == [false, {"a control change needs an attestation of it signed by the admin role"}]
}
