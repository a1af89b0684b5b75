#!/bin/sh
# shout.sh - an exec-mode agent in plain shell: the payload is a string,
# the result is that string in capitals.  It shows the exec contract:
# the task's JSON line on stdin, the result on stdout (plain text is taken
# as a string result), exit status 0 for success, and for a failure an
# exit status other than 0 with the reason on stderr.
#
#   hive-worker --agent shouter --mode exec -- /bin/sh examples/shout.sh
#
# The worker writes the fields of a task line in a fixed order (id,
# attempt, agent, payload, memory), which lets sed find the payload here;
# a real agent would use a JSON parser (jq, python3 -c ...).
task=$(cat)
text=$(printf '%s\n' "$task" | sed -n 's/.*"payload":"\(.*\)","memory":.*/\1/p')
if [ -z "$text" ]; then
	echo "nothing to shout: give a non-empty string as the payload" >&2
	exit 1
fi
printf '%s\n' "$text" | tr '[:lower:]' '[:upper:]'
