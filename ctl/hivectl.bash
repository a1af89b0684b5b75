# bash completion for hivectl(1): verbs, their options, and agent names
# (from `hivectl status --json`, when hived answers within a second).
# Installed as .../bash-completion/completions/hivectl; works without the
# bash-completion package too (source it).

_hivectl_agents()
{
	# The address and token options already typed, for the lookup.
	local -a pass=()
	local i
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case ${COMP_WORDS[i]} in
		--url|--config|--token-file)
			pass+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}") ;;
		esac
	done
	"${COMP_WORDS[0]}" "${pass[@]}" --http-timeout 1s status --json \
	    2>/dev/null | sed -n 's/^ *"agent": *"\([^"]*\)".*/\1/p' |
	    sed 'p; s,/[0-9]*$,,' | sort -u
}

_hivectl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	local verbs="status start stop restart sleep wake reset drain reload
	    stop-all start-all health submit wait task tasks workflow
	    workflows queues dead logs usage help"
	local global="--json --url --token-file --config --http-timeout --help"
	local verb= i nargs=0

	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	# The verb, and the arguments after it (options and their values
	# aside).
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--url|--token-file|--config|--http-timeout|--priority|--agent|\
		--id|--timeout|--state|--capability|--workflow|--since|--limit|\
		--code|--lines|-n|--by)
			((i++)) ;;
		-*) ;;
		*)
			if [[ -z $verb ]]; then
				verb=${COMP_WORDS[i]}
			else
				((nargs++))
			fi ;;
		esac
	done

	case $prev in
	--token-file|--config)
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--priority)
		COMPREPLY=($(compgen -W "0 1 2" -- "$cur"))
		return ;;
	--state)
		if [[ $verb == workflows ]]; then
			COMPREPLY=($(compgen -W "running completed failed" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "waiting queued running completed
			    failed dead" -- "$cur"))
		fi
		return ;;
	--agent)
		COMPREPLY=($(compgen -W "$(_hivectl_agents)" -- "$cur"))
		return ;;
	--by)
		COMPREPLY=($(compgen -W "agent capability workflow" -- "$cur"))
		return ;;
	--code)
		COMPREPLY=($(compgen -W "attempts failed handler timeout
		    dependency refused malformed notmap toobig version missing
		    type size value duplicate" -- "$cur"))
		return ;;
	--url|--http-timeout|--id|--timeout|--since|--limit|--capability|--workflow|\
	--lines|-n)
		return ;;
	esac

	if [[ -z $verb ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$global --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
		fi
		return
	fi

	local opts=
	case $verb in
	stop-all) opts="--timeout" ;;
	submit) opts="--priority --agent --id --wait --timeout" ;;
	wait) opts="--timeout --follow -f" ;;
	tasks) opts="--state --capability --agent --workflow --since --limit" ;;
	workflows) opts="--state --since --limit" ;;
	dead) opts="--code --capability --all --limit" ;;
	logs) opts="--follow --lines -f -n" ;;
	usage) opts="--by --since --limit" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
		return
	fi
	case $verb in
	status|start|stop|restart|sleep|wake|reset|drain|logs)
		((nargs == 0)) &&
		    COMPREPLY=($(compgen -W "$(_hivectl_agents)" -- "$cur")) ;;
	help)
		((nargs == 0)) && COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
	dead)
		((nargs == 0)) &&
		    COMPREPLY=($(compgen -W "ls show retry" -- "$cur")) ;;
	esac
}

complete -F _hivectl hivectl
