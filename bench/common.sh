# Shell helpers shared by bench/run.sh and bench/ab.sh (sourced).

# listening_url FILE PID TENTHS: the "listening on URL" a server printed to
# FILE, waiting up to TENTHS tenths of a second while PID lives; prints the
# URL, or nothing if it never came.
listening_url() {
  local out=$1 pid=$2 tenths=$3 url=""
  for _ in $(seq "$tenths"); do
    url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$out" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  printf '%s' "$url"
}
