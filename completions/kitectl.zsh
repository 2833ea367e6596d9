#compdef kitectl
# zsh completion for kitectl, generated from the kitectl command definitions by 'python -m kitectl.gen'; do not edit.
# Install it as _kitectl in a directory on $fpath, e.g. kitectl completion zsh > "${fpath[1]}/_kitectl",
# or load it in a running shell with: source <(kitectl completion zsh)

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

# Subcommands with descriptions, as name:description.
_kitectl_describe_subcommands() {
    case "$1" in
        "kitectl") _kitectl_entries=('completion:Print the completion script for a shell on stdout' 'kontrol:Run a Kontrol and manage its key pairs, users and registration tokens' 'ping:Call kite.ping on a kite, or on every match of --query, and print one line per kite wit' 'proxy:Run a reverse proxy: many kites behind one public host and port, with optional TLS' 'query:List the kites registered with Kontrol that match the given identity fields' 'register:Get a kite.key signed by Kontrol and write it where kites and kitectl look for it' 'showkey:Show which kite.key is used, its claims, and whether its signature checks out' 'tell:Call METHOD on a kite and print the result as JSON' 'tunnel:Run a tunnel proxy for kites behind NAT, or expose a local kite through one') ;;
        "kitectl kontrol") _kitectl_entries=('init:Create Kontrol'\''s first key pair and write its own kite.key, without serving' 'keys:Manage Kontrol'\''s signing key pairs' 'serve:Run a Kontrol until Ctrl-C or SIGTERM; the embedded SQLite default needs no flags' 'token:Manage one-time registration tokens' 'user:Manage the users that may register machines with a password') ;;
        "kitectl kontrol keys") _kitectl_entries=('rotate:Create a new signing key pair and retire the current one') ;;
        "kitectl kontrol token") _kitectl_entries=('create:Create a one-time registration token and print it on stdout') ;;
        "kitectl kontrol user") _kitectl_entries=('add:Add a user, or set a new password for one, for '\''kitectl register --password'\''') ;;
        "kitectl proxy") _kitectl_entries=('serve:Run a reverse proxy (a kite named proxy) until Ctrl-C or SIGTERM') ;;
        "kitectl tunnel") _kitectl_entries=('expose:Make the kite at URL reachable through a tunnel proxy until Ctrl-C or SIGTERM' 'serve:Run a tunnel proxy (a kite named tunnelproxy) until Ctrl-C or SIGTERM') ;;
        *) _kitectl_entries=() ;;
    esac
}

# Options with descriptions, as name:description.
_kitectl_describe_options() {
    case "$1" in
        "kitectl") _kitectl_entries=('--debug:Show debug logs and tracebacks on stderr' '--help:Show this message and exit' '-h:Show this message and exit' '--version:Print the kitectl version and exit') ;;
        "kitectl completion") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl kontrol") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl kontrol init") _kitectl_entries=('--db:SQLite database file' '--etcd-endpoints:etcd client URLs, comma-separated (the first is used)' '--force:Replace a kite.key that another Kontrol signed' '-f:Replace a kite.key that another Kontrol signed' '--help:Show this message and exit' '-h:Show this message and exit' '--host:Address to listen on' '--kite-key:Where Kontrol'\''s own kite.key goes' '--port:TCP port; 0 picks a free one' '-p:TCP port; 0 picks a free one' '--postgres-dsn:PostgreSQL connection string' '--public-url:URL kites use to reach Kontrol, written into the kite keys it issues' '--storage:Storage backend; sqlite is embedded and needs no server' '--tls-cert:TLS certificate (PEM); needs --tls-key' '--tls-key:TLS private key (PEM); needs --tls-cert' '--username:Kontrol'\''s own user, the issuer of every key and token') ;;
        "kitectl kontrol keys") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl kontrol keys rotate") _kitectl_entries=('--db:SQLite database file' '--etcd-endpoints:etcd client URLs, comma-separated (the first is used)' '--help:Show this message and exit' '-h:Show this message and exit' '--kite-key:Where Kontrol'\''s own kite.key goes' '--postgres-dsn:PostgreSQL connection string' '--storage:Storage backend; sqlite is embedded and needs no server') ;;
        "kitectl kontrol serve") _kitectl_entries=('--db:SQLite database file' '--etcd-endpoints:etcd client URLs, comma-separated (the first is used)' '--force:Replace a kite.key that another Kontrol signed' '-f:Replace a kite.key that another Kontrol signed' '--help:Show this message and exit' '-h:Show this message and exit' '--host:Address to listen on' '--init:Create the first key pair when storage has none (--no-init exits 1 instead)' '--no-init:Create the first key pair when storage has none (--no-init exits 1 instead)' '--kite-key:Where Kontrol'\''s own kite.key goes' '--log-level:Log level on stderr' '--machine-auth:registerMachine methods to accept: password, token, open (open gives keys to anyone)' '--port:TCP port; 0 picks a free one' '-p:TCP port; 0 picks a free one' '--postgres-dsn:PostgreSQL connection string' '--public-url:URL kites use to reach Kontrol, written into the kite keys it issues' '--storage:Storage backend; sqlite is embedded and needs no server' '--tls-cert:TLS certificate (PEM); needs --tls-key' '--tls-key:TLS private key (PEM); needs --tls-cert' '--username:Kontrol'\''s own user, the issuer of every key and token') ;;
        "kitectl kontrol token") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl kontrol token create") _kitectl_entries=('--db:SQLite database file' '--etcd-endpoints:etcd client URLs, comma-separated (the first is used)' '--help:Show this message and exit' '-h:Show this message and exit' '--postgres-dsn:PostgreSQL connection string' '--storage:Storage backend; sqlite is embedded and needs no server' '--ttl:How long the token stays usable: seconds or a Go duration' '--username:Only this user may register with the token') ;;
        "kitectl kontrol user") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl kontrol user add") _kitectl_entries=('--db:SQLite database file' '--etcd-endpoints:etcd client URLs, comma-separated (the first is used)' '--help:Show this message and exit' '-h:Show this message and exit' '--password-stdin:Read the password from the first line of stdin instead of prompting twice' '--postgres-dsn:PostgreSQL connection string' '--storage:Storage backend; sqlite is embedded and needs no server') ;;
        "kitectl ping") _kitectl_entries=('--count:Pings per kite; the line shows min/avg/max when above 1' '-c:Pings per kite; the line shows min/avg/max when above 1' '--help:Show this message and exit' '-h:Show this message and exit' '--json:Print one JSON document with results, errors and timings' '--kontrol-url:Kontrol to query instead of the kontrolURL in kite.key or $KITE_KONTROL_URL' '--query:Call the kites Kontrol finds for these identity fields instead of a URL, e.g' '-q:Call the kites Kontrol finds for these identity fields instead of a URL, e.g' '--timeout:Time limit for connecting and for each call: seconds (2.5) or a Go duration (4s, 1m, 50' '-t:Time limit for connecting and for each call: seconds (2.5) or a Go duration (4s, 1m, 50' '--transport:SockJS transport: auto tries WebSocket and falls back to XHR polling') ;;
        "kitectl proxy") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl proxy serve") _kitectl_entries=('--environment:Environment in the kite identity; kites look for proxies in their own' '--help:Show this message and exit' '-h:Show this message and exit' '--host:Address to listen on' '--kontrol-url:Kontrol to register with' '--log-level:Log level on stderr' '--port:TCP port to listen on; 0 picks a free one' '-p:TCP port to listen on; 0 picks a free one' '--public-host:Host name or address in the URLs the proxy hands out' '--public-port:Port in the URLs the proxy hands out; 0 means the listening port' '--region:Region in the kite identity' '--register:Register with Kontrol' '--no-register:Register with Kontrol' '--tls-cert:TLS certificate (PEM); needs --tls-key' '--tls-key:TLS private key (PEM); needs --tls-cert') ;;
        "kitectl query") _kitectl_entries=('--environment:Match the environment field exactly' '--help:Show this message and exit' '-h:Show this message and exit' '--hostname:Match the hostname field exactly' '--id:Match the id field exactly' '--json:Print a JSON array of {kite, url}; with --watch one JSON object per line' '--kontrol-url:Kontrol to query instead of the kontrolURL in kite.key or $KITE_KONTROL_URL' '--name:Match the name field exactly' '--region:Match the region field exactly' '--timeout:Time limit for reaching Kontrol: seconds or a Go duration' '-t:Time limit for reaching Kontrol: seconds or a Go duration' '--username:Match the username field exactly' '--version:Match the version: exact (1.0.0) or a constraint Kontrol understands (>=1.0.0)' '--watch:Keep running and print a line per REGISTER or DEREGISTER until Ctrl-C' '-w:Keep running and print a line per REGISTER or DEREGISTER until Ctrl-C') ;;
        "kitectl register") _kitectl_entries=('--force:Replace an existing kite.key' '-f:Replace an existing kite.key' '--help:Show this message and exit' '-h:Show this message and exit' '--kontrol-url:Kontrol to register with' '--open:Ask without credentials; works only where Kontrol enables open registration' '--password:Authenticate with the user'\''s password (the default): Kontrol asks for it and kitectl pr' '--password-stdin:Read the password from the first line of stdin instead of prompting ($KITE_PASSWORD wor' '--timeout:Time limit for the whole exchange, including typing the password' '-t:Time limit for the whole exchange, including typing the password' '--token:Authenticate with a one-time token from '\''kitectl kontrol token create'\''' '--username:User to get the key for') ;;
        "kitectl showkey") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit' '--json:Print one JSON object: path, header, claims, signature and expiry') ;;
        "kitectl tell") _kitectl_entries=('--args-json:All arguments as one JSON array, instead of ARG words' '--help:Show this message and exit' '-h:Show this message and exit' '--json:Print one JSON document with results, errors and timings' '--kontrol-url:Kontrol to query instead of the kontrolURL in kite.key or $KITE_KONTROL_URL' '--one:With --query, call only the first match' '--query:Call the kites Kontrol finds for these identity fields instead of a URL, e.g' '-q:Call the kites Kontrol finds for these identity fields instead of a URL, e.g' '--timeout:Time limit for connecting and for each call: seconds (2.5) or a Go duration (4s, 1m, 50' '-t:Time limit for connecting and for each call: seconds (2.5) or a Go duration (4s, 1m, 50' '--transport:SockJS transport: auto tries WebSocket and falls back to XHR polling') ;;
        "kitectl tunnel") _kitectl_entries=('--help:Show this message and exit' '-h:Show this message and exit') ;;
        "kitectl tunnel expose") _kitectl_entries=('--environment:Environment in the kite identity; kites look for proxies in their own' '--help:Show this message and exit' '-h:Show this message and exit' '--kite-version:Version registered in Kontrol' '--kontrol-url:Kontrol to register with' '--log-level:Log level on stderr' '--name:Name the exposed kite is registered under in Kontrol' '--region:Region in the kite identity' '--register:Register with Kontrol' '--no-register:Register with Kontrol' '--tunnel-url:Kite URL of the tunnel proxy, e.g') ;;
        "kitectl tunnel serve") _kitectl_entries=('--environment:Environment in the kite identity; kites look for proxies in their own' '--help:Show this message and exit' '-h:Show this message and exit' '--host:Address to listen on' '--kontrol-url:Kontrol to register with' '--log-level:Log level on stderr' '--port:TCP port to listen on; 0 picks a free one' '-p:TCP port to listen on; 0 picks a free one' '--private-key:RSA private key (PEM) that signs tunnel tokens' '--public-host:Host and port in the URLs the proxy hands out to clients and kites' '--region:Region in the kite identity' '--register:Register with Kontrol' '--no-register:Register with Kontrol' '--tunnel-timeout:How long a client waits for the kite to open its tunnel, in seconds or as 30s, 1m') ;;
        *) _kitectl_entries=() ;;
    esac
}

_kitectl() {
    local command="kitectl" word i skip=0 values
    local -a _kitectl_entries
    for ((i = 2; i < CURRENT; i++)); do
        word="${words[i]}"
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
    if ((skip)); then
        values="$(_kitectl_option_values "$command|${words[CURRENT-1]}")"
        if [[ "$values" == "@file" ]]; then
            _files
        elif [[ -n "$values" ]]; then
            compadd -- ${=values}
        else
            _message "value for ${words[CURRENT-1]}"
        fi
        return
    fi
    if [[ "${words[CURRENT]}" == -* ]]; then
        _kitectl_describe_options "$command"
        _describe -t options option _kitectl_entries
        return
    fi
    _kitectl_describe_subcommands "$command"
    if (( ${#_kitectl_entries} )); then
        _describe -t commands command _kitectl_entries
        return
    fi
    values="$(_kitectl_arguments "$command")"
    [[ -n "$values" ]] && compadd -- ${=values}
}

if [[ "${funcstack[1]}" == "_kitectl" ]]; then
    _kitectl "$@"
else
    compdef _kitectl kitectl
fi
