#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, starts
# `uhub serve` on its embedded SQLite store with examples/uhub.json, and runs
# an example ansible-playbook job through the Local backend, streaming its log.
# The daemon keeps running afterwards (its pid is in .quickstart/uhub.pid).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "uhub's Local backend runs jobs under their own uids: run this as root" >&2; exit 1; }
scripts/deps.sh run
scripts/build.sh build
mkdir -p .quickstart /var/lib/uhub/examples
chmod 0755 /var/lib/uhub /var/lib/uhub/examples
install -m 0644 examples/hello.yml /var/lib/uhub/examples/hello.yml

if [ -f .quickstart/uhub.pid ] && kill -0 "$(cat .quickstart/uhub.pid)" 2>/dev/null; then
  echo "stopping the previous quickstart daemon"
  kill -TERM "$(cat .quickstart/uhub.pid)"
  while kill -0 "$(cat .quickstart/uhub.pid)" 2>/dev/null; do sleep 0.2; done
fi
if [ ! -s .quickstart/admin.token ]; then
  (umask 077; head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > .quickstart/admin.token)
fi
UHUB_BOOTSTRAP_TOKEN_FILE=.quickstart/admin.token nohup build/uhub serve --config examples/uhub.json \
  > .quickstart/uhub.out 2> .quickstart/uhub.log &
echo $! > .quickstart/uhub.pid
for _ in $(seq 1 100); do
  grep -q "listening on" .quickstart/uhub.out 2>/dev/null && break
  kill -0 "$(cat .quickstart/uhub.pid)" 2>/dev/null || { cat .quickstart/uhub.log >&2; exit 1; }
  sleep 0.1
done
export UHUB_URL=http://127.0.0.1:8080 UHUB_TOKEN_FILE=$PWD/.quickstart/admin.token
echo "uhub is serving on $UHUB_URL (log: .quickstart/uhub.log)"

build/uhub project show example >/dev/null 2>&1 ||
  build/uhub project create example --env dev --backend local >/dev/null
build/uhub job show example/hello >/dev/null 2>&1 ||
  build/uhub job create example hello --param TARGET -- /usr/bin/ansible-playbook -i localhost, /var/lib/uhub/examples/hello.yml >/dev/null
echo "running example/hello (ansible-playbook through the Local backend):"
set +e
build/uhub run example/hello -p TARGET=quickstart --follow
status=$?
set -e
echo "run finished with exit status $status"
echo "try: UHUB_URL=$UHUB_URL UHUB_TOKEN_FILE=$UHUB_TOKEN_FILE build/uhub runs"
echo "stop the daemon with: kill \$(cat .quickstart/uhub.pid)"
exit $status
