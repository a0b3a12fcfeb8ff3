# The default promotion policy.
#
# Input, promote-policy-input/v2 (see control/promote/promote_protocol.md, "The policy
# input"; its JSON Schema is control/promote/policy_input.schema.json):
#   input.kind           "release" (targets to promote) or "control" (a change of the
#                        pinned policy and trust roots)
#   input.capsule        the capsule, as submitted
#   input.capsule_digest its digest in the store
#   input.attestations   one record per attestation the gate verified:
#                        {"digest", "signers": [ids], "roles": [roles whose threshold
#                        the signers meet], "predicate_type", "predicate",
#                        "subjects": [{"name", "digest": {...}, "targets": [{"path",
#                        "digest", "size"}, ...]}]}; a subject's targets are those whose
#                        bytes the gate matched it against. A v1 capsule's CHECK report
#                        is one record with no signer and no role.
#   input.current        {path: {"digest","size"} | null} for every target path, now
#   input.allow_list     the allow-listed path prefixes
#   input.ledger         {"seq": n, "head": "<entry hash>" | null}
#   input.control        for a control capsule, {"policy": {"pinned", "new"},
#                        "trust": {"pinned", "new"}}; else null
#
# Output: `allow` (a boolean) and `deny` (a set of reasons). The gate promotes only
# when allow is true AND deny is empty; anything else, undefined included, is a deny.
#
# What it asks: every target covered, by path, digest and size, by a passing CHECK
# predicate (or an in-toto test result PASSED) that the checker role signed; any
# failing CHECK or test result denies; unsigned evidence denies. To accept unsigned
# evidence (a v1 capsule's CHECK report) a workspace would drop the "unsigned" rule and
# the "checker" condition of `passing`: docs/security.md says why not to.
package promote

import rego.v1

default allow := false

# Every rule is defined before the rules that use it: helpers first, then `deny`, then
# `allow`. regorus 0.13 evaluates a rule wrongly, under `with input as` (the policy
# tests) or when the package document `data.promote` is read, if the package spans
# several files and the rule refers to one defined after it. The engines ask the rules
# `data.promote.allow` and `data.promote.deny`, and this order keeps the tests right.
#
# Total: every input, malformed ones included, gets the same decision from every engine
# (regorus, and OPA with or without strict built-in errors), and no built-in raises.
# So each `some x in y` and `every x in y` over the input first asks `is_array(y)` (or
# `is_object`), each built-in gets only the types it takes (`startswith` strings, `count`
# arrays, never a string), and a reason formats a value only through `shown` (or
# `quoted`), which prints a string and names any other type. (`some x in "abc"` is an
# error in regorus and undefined in OPA; `%s` of a number prints otherwise in each;
# `count("abc")` is 3 in OPA.) promote_test.rego tests each guard;
# tests/policy/test_differential.py compares the engines on thousands of malformed
# inputs. The gate's own input is always well-formed (policy_input.schema.json). A
# module added to package `promote` must be total too: regorus evaluates its rules
# under the tests' `with input as`, so a built-in error there fails these tests.

check_type := "https://cas-promote.invalid/check-report/v1"

intoto_result_type := "https://in-toto.io/attestation/test-result/v0.1"

control_type := "https://cas-promote.invalid/control-change/v1"

# A value for a reason: a string as it is, anything else by its type, e.g. "<number>".
shown(x) := x if is_string(x)

shown(x) := sprintf("<%s>", [type_name(x)]) if not is_string(x)

quoted(x) := sprintf("%q", [x]) if is_string(x)

quoted(x) := shown(x) if not is_string(x)

# The input's lists, or nothing when the input holds something else there.
attestations := input.attestations if is_array(input.attestations)

targets := input.capsule.targets if is_array(input.capsule.targets)

current := input.current if is_object(input.current)

has_role(a, role) if {
	is_array(a.roles)
	role in a.roles
}

# The CHECK evidence that counts: signed to the checker role's threshold, and passing.
passing contains a if {
	some a in attestations
	a.predicate_type == check_type
	has_role(a, "checker")
	a.predicate.status == "pass"
}

passing contains a if {
	some a in attestations
	a.predicate_type == intoto_result_type
	has_role(a, "checker")
	a.predicate.result == "PASSED"
}

# Built once per evaluation, so checking N targets costs N set look-ups, not N * M
# comparisons.
checked := {[t.path, t.digest, t.size] |
	some a in passing
	is_array(a.subjects)
	some subject in a.subjects
	is_array(subject.targets)
	some t in subject.targets
}

covered(target) if [target.path, target.digest, target.size] in checked

# A delete (`"delete": true`) names no object, so there is nothing for evidence to
# cover; the gate has checked that the path exists now.
covered(target) if target.delete == true

prefixes := [prefix | some prefix in input.allow_list; is_string(prefix)] if is_array(input.allow_list)

allowed(path) if {
	is_string(path)
	some prefix in prefixes
	startswith(path, prefix)
}

checks := [a | some a in attestations; a.predicate_type == check_type]

# A CHECK predicate that lists at least one check.
ran_checks(a) if {
	is_array(a.predicate.checks)
	count(a.predicate.checks) > 0
}

signed(a) if {
	is_array(a.signers)
	count(a.signers) > 0
}

# A control change that an admin signed, naming exactly the new policy and trust roots.
admin_change if {
	some a in attestations
	a.predicate_type == control_type
	has_role(a, "admin")
	a.predicate == {"policy": input.control.policy.new, "trust": input.control.trust.new}
}

deny contains msg if {
	some a in attestations
	not signed(a)
	msg := sprintf("attestation %s is unsigned: no trusted signer", [shown(a.digest)])
}

deny contains msg if {
	some a in checks
	a.predicate.status != "pass"
	msg := sprintf("the CHECK report %s has status %s, not pass", [shown(a.digest), shown(a.predicate.status)])
}

deny contains msg if {
	some a in checks
	ran_checks(a)
	some check in a.predicate.checks
	check.status == "fail"
	msg := sprintf("check %s failed", [quoted(check.name)])
}

deny contains msg if {
	some a in checks
	not ran_checks(a)
	msg := sprintf("the CHECK report %s ran no checks", [shown(a.digest)])
}

deny contains msg if {
	some a in checks
	ran_checks(a)
	every check in a.predicate.checks {
		check.status == "skip"
	}
	msg := sprintf("every check of the CHECK report %s was skipped", [shown(a.digest)])
}

deny contains msg if {
	some a in attestations
	a.predicate_type == intoto_result_type
	a.predicate.result != "PASSED"
	msg := sprintf("the test result %s is %s, not PASSED", [shown(a.digest), shown(a.predicate.result)])
}

deny contains msg if {
	some target in targets
	not covered(target)
	msg := sprintf("target %s (%s) is not covered by a passing CHECK signed by the checker role", [shown(target.path), shown(target.digest)])
}

deny contains msg if {
	some target in targets
	not allowed(target.path)
	msg := sprintf("target %s is outside the allow-list", [shown(target.path)])
}

deny contains msg if {
	some target in targets
	current[target.path].digest == target.digest
	msg := sprintf("target %s already holds %s: nothing to promote", [shown(target.path), shown(target.digest)])
}

deny contains "a control change needs an attestation of it signed by the admin role" if {
	input.kind == "control"
	not admin_change
}

# Allow needs positive evidence, not merely the absence of a deny reason: a missing
# field must never let a promotion through.
allow if {
	input.kind == "release"
	count(deny) == 0
	count(targets) > 0
	every target in targets {
		covered(target)
		allowed(target.path)
	}
}

allow if {
	input.kind == "control"
	count(deny) == 0
	count(targets) == 0
	admin_change
}
