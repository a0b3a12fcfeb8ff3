# The default promotion policy.
#
# Input (see control/promote/promote_protocol.md, "The policy input"):
#   input.capsule        the capsule, as submitted
#   input.capsule_digest its digest in the store
#   input.check_report   the CHECK report's content
#   input.current        {path: {"digest","size"} | null} for every target path, now
#   input.allow_list     the allow-listed path prefixes
#   input.ledger         {"seq": n, "head": "<entry hash>" | null}
#
# Output: `allow` (a boolean) and `deny` (a set of reasons). The gate promotes only
# when allow is true AND deny is empty; anything else, undefined included, is a deny.
package promote

import rego.v1

default allow := false

# Every rule is defined before the rules that use it: helpers first, then `deny`, then
# `allow`. regorus 0.13 evaluates a rule wrongly, under `with input as` (the policy
# tests) or when the package document `data.promote` is read, if the package spans
# several files and the rule refers to one defined after it. The engines ask the rules
# `data.promote.allow` and `data.promote.deny`, and this order keeps the tests right.

# Built once per evaluation, so checking N targets against M subjects costs N set
# look-ups, not N * M comparisons.
checked := {[subject.digest, subject.size] | some subject in input.check_report.subjects}

covered(target) if [target.digest, target.size] in checked

# A delete (`"delete": true`) names no object, so there is nothing for the CHECK report
# to cover; the gate has checked that the path exists now.
covered(target) if target.delete == true

allowed(path) if {
	some prefix in input.allow_list
	startswith(path, prefix)
}

deny contains "the CHECK report's status is not pass" if {
	input.check_report.status != "pass"
}

deny contains msg if {
	some check in input.check_report.checks
	check.status == "fail"
	msg := sprintf("check %q failed", [check.name])
}

deny contains "the CHECK report ran no checks" if {
	count(input.check_report.checks) == 0
}

deny contains "every check of the CHECK report was skipped" if {
	count(input.check_report.checks) > 0
	every check in input.check_report.checks {
		check.status == "skip"
	}
}

deny contains msg if {
	some target in input.capsule.targets
	not covered(target)
	msg := sprintf("target %s (%s) is not covered by the CHECK report", [target.path, target.digest])
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

# Allow needs positive evidence, not merely the absence of a deny reason: a missing
# field must never let a promotion through.
allow if {
	count(deny) == 0
	input.check_report.status == "pass"
	count(input.check_report.checks) > 0
	count(input.capsule.targets) > 0
	every target in input.capsule.targets {
		covered(target)
		allowed(target.path)
	}
}
