# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cmkfs_global_optspecs
    string join \n h/help V/version
end

function __fish_cmkfs_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cmkfs_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cmkfs_using_subcommand
    set -l cmd (__fish_cmkfs_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cmkfs -n "__fish_cmkfs_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -s V -l version -d 'Print version'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "init" -d 'Create a new volume in an empty backing directory, with a fresh service key'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "mount" -d 'Mount a volume (runs the daemon; in the background unless --foreground)'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "umount" -d 'Unmount a cmkfs mount and wait for its daemon to exit'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "status" -d 'Show the state of one mount (or all): keys, cache, open files, traffic, uptime'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "cache" -d 'Data-key cache operations on a running mount'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "key" -d 'Key operations on a running mount (and set-cmk / remove-cmk on an unmounted volume)'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "reencrypt" -d 'Move existing files to the newest data key (online through MOUNTPOINT, or offline on BACKING); resumable'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "fsck" -d 'Check a volume (exit 0 clean, 1 problems found, 2 could not check); read-only unless --quarantine'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "audit" -d 'The tamper-evident audit log of key events: verify its hash chain, show its records'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "volume" -d 'Volume settings and the hosts that have a shared volume mounted'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "scope" -d 'Key scopes: directory subtrees with their own data keys and customer-managed key, revoked, locked and rotated on their own'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh or fish'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "generate-man" -d 'Write the man pages (cmkfs.8 and one per subcommand) to DIR'
complete -c cmkfs -n "__fish_cmkfs_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l service-key -d 'Where to write the new service key (default: /var/lib/cmkfs/keys/VOLUME_ID.key as root, ~/.local/share/cmkfs/keys/VOLUME_ID.key otherwise). Must be outside BACKING' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l block-size -d 'Plaintext bytes per encrypted block (power of two, 512..1048576)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l cmk -d 'Bind the volume to a customer-managed key: https://VAULT/keys/NAME. Data keys are then wrapped by the service key and again by this key' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l audit-log -d 'The audit log that records the first key wrap (default /var/log/cmkfs/audit.log as root)' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l json -d 'Print the result as JSON'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l fips -d 'Encrypt names with the FIPS scheme (HMAC-SHA-256 synthetic IV + AES-256-CTR, approved algorithms only). Always on in a build made with `--features fips`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -l shared -d 'Shared mode: several daemons (on several hosts, backing directory on a network or distributed filesystem) may mount the volume at once (docs/shared.md)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand init" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l config -d 'A config file (e.g. /etc/cmkfs/NAME.toml); flags given here override it' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume)' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -s o -d 'Mount options, comma separated: ro, allow_other (implies default_permissions), allow_root, default_permissions, nosuid, nodev, noexec, noatime, ..., and every flag as an option: service_key=FILE, config=FILE, log_file=FILE. May be repeated' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l log-file -d 'Append the daemon\'s log lines to FILE (a background daemon logs nowhere otherwise)' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l log-target -d 'Where log lines go: auto (the journal when stderr is systemd\'s journal stream and no --log-file is given, else as stderr), journald (structured fields: volume, mountpoint, key, errno, file), stderr (--log-file or stderr, as text)' -r -f -a "auto\t'The journal when stderr is the journal stream systemd set up (`JOURNAL_STREAM`) and no `--log-file` is given; otherwise `--log-file` or stderr'
journald\t'The journal, with structured fields (fails if journald cannot be reached)'
stderr\t'`--log-file` or stderr, as text lines'"
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l threads -d 'Threads serving FUSE requests (default: twice the number of CPUs, at least 4)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l cache-capacity -d 'Data-key cache capacity in entries (default 1024)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l cache-max-age -d 'Maximum age of a cached data key in seconds (default 3600)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l revocation-check-interval -d 'How often the customer-managed key is checked for revocation, in seconds (default 30)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l audit-log -d 'The audit log (default /var/log/cmkfs/audit.log as root)' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l fips -d '`required`: refuse to mount unless this is the fips build (AWS-LC-FIPS) in FIPS mode (config key `fips`, option `-o fips=required`)' -r -f -a "auto\t'FIPS mode in the fips build; the default build runs on AWS-LC without it'
required\t'Only the fips build in FIPS mode mounts (for fleets that must never run the other one)'"
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l metrics-listen -d 'Serve Prometheus metrics over HTTP at ADDR (HOST:PORT, e.g. 127.0.0.1:9464; a loopback address is recommended), path /metrics. Off by default' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l metrics-socket -d 'Serve Prometheus metrics over HTTP on the Unix socket PATH (mode 0600), path /metrics' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -s f -l foreground -d 'Stay in the foreground (for systemd); otherwise return once the mount is usable'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand umount" -s l -l lazy -d 'Detach now even if busy; the daemon exits once the last file is closed'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand umount" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand status" -l json -d 'Print JSON'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and not __fish_seen_subcommand_from flush help" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and not __fish_seen_subcommand_from flush help" -f -a "flush" -d 'Drop (and zeroize) every cached data key now'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and not __fish_seen_subcommand_from flush help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and __fish_seen_subcommand_from flush" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "flush" -d 'Drop (and zeroize) every cached data key now'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "check" -d 'Check the keys protecting the volume now (revocation check on demand)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "rotate" -d 'Rotate: re-wrap to a newer customer-managed key version, or with --data-key start a new data-key epoch for new files'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "set-cmk" -d 'Protect an unmounted volume with a customer-managed key (re-wraps every data key; no data is re-encrypted). Also switches from one CMK to another'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "remove-cmk" -d 'Remove the customer-managed key layer of an unmounted volume (back to the service key alone; no data is re-encrypted)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "backup" -d 'Write the key store and volume config (wrapped keys only) to FILE, with a checksum and the volume id: `cmkfs key backup BACKING|MOUNTPOINT --out FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "restore" -d 'Put back the key store and volume config from a backup, after checking the volume id and that the backup\'s keys unwrap: `cmkfs key restore BACKING --from FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and not __fish_seen_subcommand_from check rotate set-cmk remove-cmk backup restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from check" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from rotate" -l data-key -d 'Start a new data-key epoch: new files use a fresh data key'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from rotate" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l cmk -d 'The customer-managed key: https://VAULT/keys/NAME' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from set-cmk" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from remove-cmk" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from backup" -l out -d 'Where to write the backup (mode 0600). Keep it outside the backing directory' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from backup" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l from -d 'A backup written by `cmkfs key backup`' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the keys protecting the volume now (revocation check on demand)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Rotate: re-wrap to a newer customer-managed key version, or with --data-key start a new data-key epoch for new files'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "set-cmk" -d 'Protect an unmounted volume with a customer-managed key (re-wraps every data key; no data is re-encrypted). Also switches from one CMK to another'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "remove-cmk" -d 'Remove the customer-managed key layer of an unmounted volume (back to the service key alone; no data is re-encrypted)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Write the key store and volume config (wrapped keys only) to FILE, with a checksum and the volume id: `cmkfs key backup BACKING|MOUNTPOINT --out FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Put back the key store and volume config from a backup, after checking the volume id and that the backup\'s keys unwrap: `cmkfs key restore BACKING --from FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -l json -d 'Print the report as JSON'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand reencrypt" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l quarantine -d 'Move files whose blocks or header cannot be read into DIR (outside BACKING), keeping their backing path, with a .json note each. Nothing is deleted' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l json -d 'Print the report as one JSON document on stdout (no progress bar)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l repair -d 'Rewrite a damaged, missing or stale copy of the volume config, the key store or a directory id from its verified twin (never guesses; each rewrite is audited)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l shared -d 'Check a shared volume while other hosts have it mounted: takes no lock, does not report their operations in flight, reports only problems found again in later walks. --repair is refused while any host has it mounted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "verify" -d 'Check the hash chain of an audit log (exit 0 intact, 1 tampered or damaged, 2 unreadable)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "show" -d 'Print the records of an audit log, one per line'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and not __fish_seen_subcommand_from verify show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from verify" -l expect-last -d 'Anchor: a hash printed by an earlier verify; the log must still hold that record (record number --expect-count when given). Detects records cut off the end' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from verify" -l expect-count -d 'Anchor: the log must hold at least N records (the count an earlier verify printed)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from verify" -l json -d 'Print the result as JSON'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from show" -l op -d 'Only records of this op (e.g. KeyUnwrap, AccessDenied; case-insensitive)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from show" -l since -d 'Only records at or after this time (RFC 3339, e.g. 2025-03-01T12:00:00Z, or a date)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from show" -l json -d 'Print the JSON lines as they are in the log'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check the hash chain of an audit log (exit 0 intact, 1 tampered or damaged, 2 unreadable)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the records of an audit log, one per line'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and not __fish_seen_subcommand_from set-shared hosts help" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and not __fish_seen_subcommand_from set-shared hosts help" -f -a "set-shared" -d 'Turn shared mode on or off for an unmounted volume (on: several hosts may mount it)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and not __fish_seen_subcommand_from set-shared hosts help" -f -a "hosts" -d 'The daemons (host, pid, mountpoint, last renewal) that have a shared volume mounted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and not __fish_seen_subcommand_from set-shared hosts help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from set-shared" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from hosts" -l json -d 'Print the result as JSON'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from hosts" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "set-shared" -d 'Turn shared mode on or off for an unmounted volume (on: several hosts may mount it)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "hosts" -d 'The daemons (host, pid, mountpoint, last renewal) that have a shared volume mounted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "create" -d 'Make an empty directory of a running mount the root of a new key scope: its own data keys, wrapped by the service key and by --cmk (or the service key alone)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "list" -d 'List the key scopes: root, customer-managed key and version, state (usable, revoked, locked, unreachable), data-key epochs, cached keys, files. MOUNTPOINT or, offline, BACKING'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "lock" -d 'Lock a key scope now: its cached keys flushed, its files and names refused (EKEYREVOKED) until unlocked. Kept in the key store (survives remounts)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "unlock" -d 'Unlock a locked key scope: its key is unwrapped through Key Vault again'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "set-cmk" -d 'Re-wrap a scope\'s data keys under another customer-managed key (or the service key alone with --service-key-only); no data is re-encrypted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and not __fish_seen_subcommand_from create list lock unlock set-cmk help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from create" -l cmk -d 'The scope\'s customer-managed key: https://VAULT/keys/NAME' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from create" -l service-key-only -d 'No customer-managed key: the scope\'s data keys are wrapped by the service key alone'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from create" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l service-key -d 'The service key file (default: the location `cmkfs init` chose for this volume); not needed when a running mount\'s daemon serves the command' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l azure-credential -d 'Azure credential: managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l ca-file -d 'PEM file of a private CA to trust for the vault endpoint' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l key-vault-timeout -d 'Bound on one Key Vault call, in seconds (default 10)' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l no-verify-challenge-resource -d 'Accept a vault host that is not under the resource named by Key Vault\'s 401 challenge (private endpoints, emulators)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from lock" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from lock" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from unlock" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from unlock" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from set-cmk" -l cmk -d 'The scope\'s customer-managed key: https://VAULT/keys/NAME' -r
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from set-cmk" -l service-key-only -d 'No customer-managed key: the scope\'s data keys are wrapped by the service key alone'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from set-cmk" -l json
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from set-cmk" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "create" -d 'Make an empty directory of a running mount the root of a new key scope: its own data keys, wrapped by the service key and by --cmk (or the service key alone)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the key scopes: root, customer-managed key and version, state (usable, revoked, locked, unreachable), data-key epochs, cached keys, files. MOUNTPOINT or, offline, BACKING'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "lock" -d 'Lock a key scope now: its cached keys flushed, its files and names refused (EKEYREVOKED) until unlocked. Kept in the key store (survives remounts)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "unlock" -d 'Unlock a locked key scope: its key is unwrapped through Key Vault again'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "set-cmk" -d 'Re-wrap a scope\'s data keys under another customer-managed key (or the service key alone with --service-key-only); no data is re-encrypted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand completions" -l out-dir -d 'Write the script to DIR (as cmkfs, _cmkfs or cmkfs.fish) instead of standard output' -r -F
complete -c cmkfs -n "__fish_cmkfs_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand generate-man" -s h -l help -d 'Print help'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "init" -d 'Create a new volume in an empty backing directory, with a fresh service key'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "mount" -d 'Mount a volume (runs the daemon; in the background unless --foreground)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "umount" -d 'Unmount a cmkfs mount and wait for its daemon to exit'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "status" -d 'Show the state of one mount (or all): keys, cache, open files, traffic, uptime'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "cache" -d 'Data-key cache operations on a running mount'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "key" -d 'Key operations on a running mount (and set-cmk / remove-cmk on an unmounted volume)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "reencrypt" -d 'Move existing files to the newest data key (online through MOUNTPOINT, or offline on BACKING); resumable'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "fsck" -d 'Check a volume (exit 0 clean, 1 problems found, 2 could not check); read-only unless --quarantine'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "audit" -d 'The tamper-evident audit log of key events: verify its hash chain, show its records'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "volume" -d 'Volume settings and the hosts that have a shared volume mounted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "scope" -d 'Key scopes: directory subtrees with their own data keys and customer-managed key, revoked, locked and rotated on their own'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "completions" -d 'Print the shell completion script for bash, zsh or fish'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "generate-man" -d 'Write the man pages (cmkfs.8 and one per subcommand) to DIR'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and not __fish_seen_subcommand_from init mount umount status cache key reencrypt fsck audit volume scope completions generate-man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "flush" -d 'Drop (and zeroize) every cached data key now'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "check" -d 'Check the keys protecting the volume now (revocation check on demand)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "rotate" -d 'Rotate: re-wrap to a newer customer-managed key version, or with --data-key start a new data-key epoch for new files'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "set-cmk" -d 'Protect an unmounted volume with a customer-managed key (re-wraps every data key; no data is re-encrypted). Also switches from one CMK to another'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "remove-cmk" -d 'Remove the customer-managed key layer of an unmounted volume (back to the service key alone; no data is re-encrypted)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "backup" -d 'Write the key store and volume config (wrapped keys only) to FILE, with a checksum and the volume id: `cmkfs key backup BACKING|MOUNTPOINT --out FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "restore" -d 'Put back the key store and volume config from a backup, after checking the volume id and that the backup\'s keys unwrap: `cmkfs key restore BACKING --from FILE`'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Check the hash chain of an audit log (exit 0 intact, 1 tampered or damaged, 2 unreadable)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "show" -d 'Print the records of an audit log, one per line'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "set-shared" -d 'Turn shared mode on or off for an unmounted volume (on: several hosts may mount it)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "hosts" -d 'The daemons (host, pid, mountpoint, last renewal) that have a shared volume mounted'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "create" -d 'Make an empty directory of a running mount the root of a new key scope: its own data keys, wrapped by the service key and by --cmk (or the service key alone)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "list" -d 'List the key scopes: root, customer-managed key and version, state (usable, revoked, locked, unreachable), data-key epochs, cached keys, files. MOUNTPOINT or, offline, BACKING'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "lock" -d 'Lock a key scope now: its cached keys flushed, its files and names refused (EKEYREVOKED) until unlocked. Kept in the key store (survives remounts)'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "unlock" -d 'Unlock a locked key scope: its key is unwrapped through Key Vault again'
complete -c cmkfs -n "__fish_cmkfs_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "set-cmk" -d 'Re-wrap a scope\'s data keys under another customer-managed key (or the service key alone with --service-key-only); no data is re-encrypted'
