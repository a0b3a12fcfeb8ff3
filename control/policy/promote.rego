# The default promotion policy.
#
# Input, promote-policy-input/v2 (see control/promote/promote_protocol.md, "The policy
# input"):
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

check_type := "https://cas-promote.invalid/check-report/v1"

intoto_result_type := "https://in-toto.io/attestation/test-result/v0.1"

control_type := "https://cas-promote.invalid/control-change/v1"

# The CHECK evidence that counts: signed to the checker role's threshold, and passing.
passing contains a if {
	some a in input.attestations
	a.predicate_type == check_type
	"checker" in a.roles
	a.predicate.status == "pass"
}

passing contains a if {
	some a in input.attestations
	a.predicate_type == intoto_result_type
	"checker" in a.roles
	a.predicate.result == "PASSED"
}

# Built once per evaluation, so checking N targets costs N set look-ups, not N * M
# comparisons.
checked := {[t.path, t.digest, t.size] |
	some a in passing
	some subject in a.subjects
	some t in subject.targets
}

covered(target) if [target.path, target.digest, target.size] in checked

# A delete (`"delete": true`) names no object, so there is nothing for evidence to
# cover; the gate has checked that the path exists now.
covered(target) if target.delete == true

allowed(path) if {
	some prefix in input.allow_list
	startswith(path, prefix)
}

checks := [a | some a in input.attestations; a.predicate_type == check_type]

# A control change that an admin signed, naming exactly the new policy and trust roots.
admin_change if {
	some a in input.attestations
	a.predicate_type == control_type
	"admin" in a.roles
	a.predicate == {"policy": input.control.policy.new, "trust": input.control.trust.new}
}

deny contains msg if {
	some a in input.attestations
	count(a.signers) == 0
	msg := sprintf("attestation %s is unsigned: no trusted signer", [a.digest])
}

deny contains msg if {
	some a in checks
	a.predicate.status != "pass"
	msg := sprintf("the CHECK report %s has status %v, not pass", [a.digest, a.predicate.status])
}

deny contains msg if {
	some a in checks
	some check in a.predicate.checks
	check.status == "fail"
	msg := sprintf("check %q failed", [check.name])
}

deny contains msg if {
	some a in checks
	count(a.predicate.checks) == 0
	msg := sprintf("the CHECK report %s ran no checks", [a.digest])
}

deny contains msg if {
	some a in checks
	count(a.predicate.checks) > 0
	every check in a.predicate.checks {
		check.status == "skip"
	}
	msg := sprintf("every check of the CHECK report %s was skipped", [a.digest])
}

deny contains msg if {
	some a in input.attestations
	a.predicate_type == intoto_result_type
	a.predicate.result != "PASSED"
	msg := sprintf("the test result %s is %v, not PASSED", [a.digest, a.predicate.result])
}

deny contains msg if {
	some target in input.capsule.targets
	not covered(target)
	msg := sprintf("target %s (%s) is not covered by a passing CHECK signed by the checker role", [target.path, target.digest])
}

deny contains msg if {
	some target in input.capsule.targets
	not allowed(target.path)
	msg := sprintf("target %s is outside the allow-list", [target.path])
}

deny contains msg if {
	some target in input.capsule.targets
	current := input.current[target.path]
	current.digest == target.digest
	msg := sprintf("target %s already holds %s: nothing to promote", [target.path, target.digest])
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
	count(input.capsule.targets) > 0
	every target in input.capsule.targets {
		covered(target)
		allowed(target.path)
	}
}

allow if {
	input.kind == "control"
	count(deny) == 0
	count(input.capsule.targets) == 0
	admin_change
}
