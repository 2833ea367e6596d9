# bash completion for kitectl, generated from the kitectl command definitions by 'python -m kitectl.gen'; do not edit.
# Load it with: source <(kitectl completion bash)

# Subcommands of a command path.
_kitectl_subcommands() {
    case "$1" in
        "kitectl") echo 'completion kontrol ping proxy query register showkey tell tunnel' ;;
        "kitectl kontrol") echo 'init keys serve token user' ;;
        "kitectl kontrol keys") echo 'rotate' ;;
        "kitectl kontrol token") echo 'create' ;;
        "kitectl kontrol user") echo 'add' ;;
        "kitectl proxy") echo 'serve' ;;
        "kitectl tunnel") echo 'expose serve' ;;
    esac
}

# Every option of a command path.
_kitectl_options() {
    case "$1" in
        "kitectl") echo '--debug --help --version -h' ;;
        "kitectl completion") echo '--help -h' ;;
        "kitectl kontrol") echo '--help -h' ;;
        "kitectl kontrol init") echo '--db --etcd-endpoints --force --help --host --kite-key --port --postgres-dsn --public-url --storage --tls-cert --tls-key --username -f -h -p' ;;
        "kitectl kontrol keys") echo '--help -h' ;;
        "kitectl kontrol keys rotate") echo '--db --etcd-endpoints --help --kite-key --postgres-dsn --storage -h' ;;
        "kitectl kontrol serve") echo '--db --etcd-endpoints --force --help --host --init --kite-key --log-level --machine-auth --no-init --port --postgres-dsn --public-url --storage --tls-cert --tls-key --username -f -h -p' ;;
        "kitectl kontrol token") echo '--help -h' ;;
        "kitectl kontrol token create") echo '--db --etcd-endpoints --help --postgres-dsn --storage --ttl --username -h' ;;
        "kitectl kontrol user") echo '--help -h' ;;
        "kitectl kontrol user add") echo '--db --etcd-endpoints --help --password-stdin --postgres-dsn --storage -h' ;;
        "kitectl ping") echo '--count --help --json --kontrol-url --query --timeout --transport -c -h -q -t' ;;
        "kitectl proxy") echo '--help -h' ;;
        "kitectl proxy serve") echo '--environment --help --host --kontrol-url --log-level --no-register --port --public-host --public-port --region --register --tls-cert --tls-key -h -p' ;;
        "kitectl query") echo '--environment --help --hostname --id --json --kontrol-url --name --region --timeout --username --version --watch -h -t -w' ;;
        "kitectl register") echo '--force --help --kontrol-url --open --password --password-stdin --timeout --token --username -f -h -t' ;;
        "kitectl showkey") echo '--help --json -h' ;;
        "kitectl tell") echo '--args-json --help --json --kontrol-url --one --query --timeout --transport -h -q -t' ;;
        "kitectl tunnel") echo '--help -h' ;;
        "kitectl tunnel expose") echo '--environment --help --kite-version --kontrol-url --log-level --name --no-register --region --register --tunnel-url -h' ;;
        "kitectl tunnel serve") echo '--environment --help --host --kontrol-url --log-level --no-register --port --private-key --public-host --region --register --tunnel-timeout -h -p' ;;
    esac
}

# The options of a command path that take a value.
_kitectl_value_options() {
    case "$1" in
        "kitectl kontrol init") echo '--db --etcd-endpoints --host --kite-key --port --postgres-dsn --public-url --storage --tls-cert --tls-key --username -p' ;;
        "kitectl kontrol keys rotate") echo '--db --etcd-endpoints --kite-key --postgres-dsn --storage' ;;
        "kitectl kontrol serve") echo '--db --etcd-endpoints --host --kite-key --log-level --machine-auth --port --postgres-dsn --public-url --storage --tls-cert --tls-key --username -p' ;;
        "kitectl kontrol token create") echo '--db --etcd-endpoints --postgres-dsn --storage --ttl --username' ;;
        "kitectl kontrol user add") echo '--db --etcd-endpoints --postgres-dsn --storage' ;;
        "kitectl ping") echo '--count --kontrol-url --query --timeout --transport -c -q -t' ;;
        "kitectl proxy serve") echo '--environment --host --kontrol-url --log-level --port --public-host --public-port --region --tls-cert --tls-key -p' ;;
        "kitectl query") echo '--environment --hostname --id --kontrol-url --name --region --timeout --username --version -t' ;;
        "kitectl register") echo '--kontrol-url --timeout --token --username -t' ;;
        "kitectl tell") echo '--args-json --kontrol-url --query --timeout --transport -q -t' ;;
        "kitectl tunnel expose") echo '--environment --kite-version --kontrol-url --log-level --name --region --tunnel-url' ;;
        "kitectl tunnel serve") echo '--environment --host --kontrol-url --log-level --port --private-key --public-host --region --tunnel-timeout -p' ;;
    esac
}

# Values of an option given as 'PATH|OPTION': choices, or @file for a file name.
_kitectl_option_values() {
    case "$1" in
        "kitectl kontrol init|--db") echo '@file' ;;
        "kitectl kontrol init|--kite-key") echo '@file' ;;
        "kitectl kontrol init|--storage") echo 'sqlite etcd postgres' ;;
        "kitectl kontrol init|--tls-cert") echo '@file' ;;
        "kitectl kontrol init|--tls-key") echo '@file' ;;
        "kitectl kontrol keys rotate|--db") echo '@file' ;;
        "kitectl kontrol keys rotate|--kite-key") echo '@file' ;;
        "kitectl kontrol keys rotate|--storage") echo 'sqlite etcd postgres' ;;
        "kitectl kontrol serve|--db") echo '@file' ;;
        "kitectl kontrol serve|--kite-key") echo '@file' ;;
        "kitectl kontrol serve|--log-level") echo 'debug info warning error' ;;
        "kitectl kontrol serve|--storage") echo 'sqlite etcd postgres' ;;
        "kitectl kontrol serve|--tls-cert") echo '@file' ;;
        "kitectl kontrol serve|--tls-key") echo '@file' ;;
        "kitectl kontrol token create|--db") echo '@file' ;;
        "kitectl kontrol token create|--storage") echo 'sqlite etcd postgres' ;;
        "kitectl kontrol user add|--db") echo '@file' ;;
        "kitectl kontrol user add|--storage") echo 'sqlite etcd postgres' ;;
        "kitectl ping|--transport") echo 'auto websocket xhr' ;;
        "kitectl proxy serve|--log-level") echo 'debug info warning error' ;;
        "kitectl proxy serve|--tls-cert") echo '@file' ;;
        "kitectl proxy serve|--tls-key") echo '@file' ;;
        "kitectl tell|--transport") echo 'auto websocket xhr' ;;
        "kitectl tunnel expose|--log-level") echo 'debug info warning error' ;;
        "kitectl tunnel serve|--log-level") echo 'debug info warning error' ;;
        "kitectl tunnel serve|--private-key") echo '@file' ;;
    esac
}

# Choices for the positional arguments of a command path.
_kitectl_arguments() {
    case "$1" in
        "kitectl completion") echo 'bash zsh fish' ;;
    esac
}

_kitectl() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local command="kitectl" word i skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then
            skip=0
            continue
        fi
        if [[ "$word" == -* ]]; then
            [[ " $(_kitectl_value_options "$command") " == *" $word "* ]] && skip=1
            continue
        fi
        if [[ " $(_kitectl_subcommands "$command") " == *" $word "* ]]; then
            command="$command $word"
        fi
    done
    local values
    if ((skip)); then
        values="$(_kitectl_option_values "$command|$prev")"
        if [[ "$values" == "@file" ]]; then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
        fi
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_kitectl_options "$command")" -- "$cur")
        return 0
    fi
    values="$(_kitectl_subcommands "$command")"
    if [[ -z "$values" ]]; then
        values="$(_kitectl_arguments "$command")"
    fi
    mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
    return 0
}

complete -F _kitectl kitectl
