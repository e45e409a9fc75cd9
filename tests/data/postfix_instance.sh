#!/bin/sh
# A private Postfix 3.7 (Debian's postfix package) for record_postfix.py:
# on loopback only, every transport discard:, nothing ever relayed, with
# Dovecot (dovecot-core) answering its SASL requests.
#
#   tests/data/postfix_instance.sh start DIR [FIRST_PORT]
#   python3 tests/data/record_postfix.py --port-a ... --only ... --out new.json
#   tests/data/postfix_instance.sh stop DIR
#
# Run as root (postfix -c and Dovecot want it).  DIR is created and holds
# everything: config, queue, Dovecot's state.  The variants listen on
# 127.0.0.1, from FIRST_PORT (default 10025) up: A, B, C, D, R, E as
# record_postfix.py names them.  main.cf is Debian's (/etc/postfix/main.cf
# as the package writes it) with the changes below; master.cf is Debian's,
# chroot off (a private queue directory has no copy of /etc to chroot to).
set -eu

action=$1 dir=$2 port=${3:-10025}

if [ "$action" = stop ]; then
    postfix -c "$dir/etc" stop || true
    for pid in "$dir"/dovecot/*/master.pid; do
        [ -f "$pid" ] && kill "$(cat "$pid")"
    done
    exit 0
fi
[ "$action" = start ] || { echo "usage: $0 start|stop DIR [FIRST_PORT]" >&2; exit 2; }

mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/dovecot"
chown postfix "$dir/data"
cp /usr/share/postfix/main.cf.debian "$dir/etc/main.cf"
cp /usr/share/postfix/master.cf.dist "$dir/etc/master.cf"
cp /etc/postfix/dynamicmaps.cf "$dir/etc/"
[ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$dir/etc/"
cp /etc/postfix/postfix-files "$dir/etc/"
[ -d /etc/postfix/postfix-files.d ] && cp -r /etc/postfix/postfix-files.d "$dir/etc/"
cp /etc/postfix/postfix-script /etc/postfix/post-install "$dir/etc/"
printf 'postmaster: root\n' > "$dir/etc/aliases"
postalias "$dir/etc/aliases"
if [ ! -f "$dir/etc/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=mail.example.com \
        -keyout "$dir/etc/key.pem" -out "$dir/etc/cert.pem" 2>/dev/null
fi

# What Debian's postinst asks for (the host name, the defaults it offers),
# then what keeps the instance to itself.
postconf -c "$dir/etc" \
    "compatibility_level = 3.6" \
    "myhostname = mail.example.com" \
    "mydestination = \$myhostname, localhost.localdomain, , localhost" \
    "alias_maps = hash:$dir/etc/aliases" \
    "alias_database = hash:$dir/etc/aliases" \
    "mailbox_size_limit = 0" \
    "recipient_delimiter = +" \
    "inet_protocols = ipv4" \
    "inet_interfaces = loopback-only" \
    "mynetworks = 192.0.2.0/24" \
    "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination" \
    "smtpd_tls_cert_file = $dir/etc/cert.pem" \
    "smtpd_tls_key_file = $dir/etc/key.pem" \
    "smtpd_tls_security_level = may" \
    "default_transport = discard:" \
    "relay_transport = discard:" \
    "local_transport = discard:" \
    "virtual_transport = discard:" \
    "queue_directory = $dir/queue" \
    "data_directory = $dir/data" \
    "syslog_name = postfix-persona" \
    "maillog_file = $dir/maillog" "maillog_file_prefixes = $dir" \
    "alternate_config_directories = $dir/etc"
postconf -c "$dir/etc" -F '*/*/chroot = n'
postconf -c "$dir/etc" -M# smtp/inet
postconf -c "$dir/etc" -M "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"

sasl="-o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=private/auth"
add() {  # add VARIANT_PORT OPTIONS...
    p=$1; shift
    printf '127.0.0.1:%s inet n - n - - smtpd %s\n' "$p" "$*" >> "$dir/etc/master.cf"
}
add "$port"                                       # A: stock
add $((port + 1)) -o smtpd_helo_required=yes      # B
add $((port + 2)) $sasl -o smtpd_sasl_path=private/auth-cram   # C: SASL, CRAM-MD5 too
add $((port + 3)) -o message_size_limit=1000      # D
add $((port + 4)) -o mynetworks=127.0.0.0/8       # R: the client may relay
add $((port + 5)) -o mynetworks=127.0.0.0/8 $sasl # E: R with Dovecot SASL

# Dovecot: authentication only, for the two SASL variants: E as Postfix's
# SASL_README configures it (auth_mechanisms = plain login), C with
# CRAM-MD5 as well (a second Dovecot, since mechanisms are global).
printf 'testuser:{PLAIN}testpass\n' > "$dir/dovecot/users"
dovecot_conf() {  # dovecot_conf NAME LISTENER MECHANISMS
    mkdir -p "$dir/dovecot/$1"
    cat > "$dir/dovecot/$1.conf" <<EOF
protocols =
base_dir = $dir/dovecot/$1
state_dir = $dir/dovecot/$1
log_path = $dir/dovecot/$1.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = $3
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/dovecot/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener $dir/queue/private/$2 {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  chroot =
}
EOF
    dovecot -c "$dir/dovecot/$1.conf"
}

postfix -c "$dir/etc" check
postfix -c "$dir/etc" start
dovecot_conf e auth "plain login"
dovecot_conf c auth-cram "plain login cram-md5"
