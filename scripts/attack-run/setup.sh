#!/usr/bin/env bash
# The rig of docs/attack-run.md in /tmp/atk: a private CA, a private Postfix
# downstream on 127.0.0.1:12525 (STARTTLS required, keeps what it accepts in
# its queue) and two gateway configs (queue mode on 12526, proxy on 12527).
# Needs root (Postfix) and openssl. Then, from the repository root:
#   target/debug/exogate run --config /tmp/atk/gw-queue/gateway.toml &
#   target/debug/exogate run --config /tmp/atk/gw-proxy/gateway.toml &
#   cd scripts/attack-run && python3 addr.py   # headers.py, smuggle.py, relay.py,
#   python3 dos.py slow|big|rcpt|flood [queue|proxy], bombs.py, backscatter.py, second.py
# Stop Postfix with: kill $(cat /tmp/atk/postfix.pid)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
A=/tmp/atk
mkdir -p $A/pki && cd $A/pki
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/CN=attack CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
for n in gateway downstream; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr -subj "/CN=localhost" 2>/dev/null
  printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n" > $n.ext
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 30 -extfile $n.ext 2>/dev/null
done
chmod 644 ./*.pem ./*.key
D=$A/postfix
mkdir -p $D/etc $D/data; chmod 755 $D $D/etc; chown postfix $D/data
for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
  mkdir -p $D/spool/$q; chown postfix $D/spool/$q; chmod 700 $D/spool/$q
done
mkdir -p $D/spool/maildrop $D/spool/public $D/spool/pid
chown postfix:postdrop $D/spool/maildrop $D/spool/public; chmod 730 $D/spool/maildrop; chmod 710 $D/spool/public
cat > $D/etc/main.cf <<EOC
compatibility_level = 3.6
queue_directory = $D/spool
data_directory = $D/data
mail_owner = postfix
setgid_group = postdrop
myhostname = downstream.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = contoso.com, contoso.onmicrosoft.com
default_transport = capture
relay_transport = capture
local_transport = capture
smtpd_recipient_restrictions = check_recipient_access inline:{ {reject@contoso.com=550 5.1.1 no such user} }, permit_mynetworks, reject
maillog_file = $D/maillog
maillog_file_prefixes = /tmp
disable_mime_input_processing = yes
message_size_limit = 300000000
notify_classes =
biff = no
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = $A/pki/downstream.pem
smtpd_tls_key_file = $A/pki/downstream.key
smtpd_recipient_limit = 100000
defer_transports = capture
EOC
{ echo "127.0.0.1:12525 inet n - n - - smtpd"; cat "$here/../../tests/support/postfix-services.cf"
  echo "capture   unix  -       n       n       -       -       pipe"; echo "  user=nobody argv=/bin/true"; } > $D/etc/master.cf
setsid /usr/lib/postfix/sbin/master -c $D/etc -d > $A/postfix-master.log 2>&1 & echo $! > $A/postfix.pid
for m in queue proxy; do
  case $m in queue) P=12526; ADM=12528;; proxy) P=12527; ADM=12529;; esac
  mkdir -p $A/gw-$m
  sed -e "s/@MODE@/$m/g; s/@PORT@/$P/; s/@ADMIN@/$ADM/" "$here/gateway.toml.in" > $A/gw-$m/gateway.toml
done
echo "rig ready in $A"
