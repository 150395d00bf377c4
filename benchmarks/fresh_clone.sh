#!/usr/bin/env bash
# The README's two commands on a fresh clone, timed (benchmarks/RESULTS.md section 19):
#   bash benchmarks/fresh_clone.sh DEST [PYTHON] [REFERENCE_REPORT_JSON]
# clones this repository into DEST (beside ../shared, e.g. /work/c311), hides Python 3.10 (PYTHON310 unset, a PATH
# without pyenv), takes PYTHON as the current Python (default: python3 on that PATH), runs `make setup`, `make demo`
# and `make test` with their times, and compares the demo's verdict with REFERENCE_REPORT_JSON (e.g. a 3.10 run's
# demo_out/report/report.json): decision, energy decision and accuracy per (network, profile).
set -euo pipefail
dest=$1; python=${2:-}; reference=${3:-}
git clone -q "$(cd "$(dirname "$0")/.." && pwd)" "$dest"
cd "$dest"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
unset PYTHON310
[ -n "$python" ] && export PYTHON_CURRENT=$python
echo "$(date -u +%FT%TZ) $(git log --oneline -1 | cut -c1-60); load $(cut -d' ' -f1-3 /proc/loadavg)"
time make setup
time make demo
time make test PYTEST_ARGS="-p no:cacheprovider -ra"
echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "$reference" ] && exit 0
python3 - "$reference" demo_out/report/report.json <<'EOF'
import json, sys
rows = [{(e["network"], e["profile"]): (e["decision"], e.get("energy_decision"), e["accuracy"])
         for e in json.load(open(path))["verdict"]} for path in sys.argv[1:]]
diff = sorted(k for k in rows[0].keys() | rows[1].keys() if rows[0].get(k) != rows[1].get(k))
print(f"verdict rows {len(rows[0])} vs {len(rows[1])}; differing: {len(diff)}")
for k in diff:
    print("  ", k, rows[0].get(k), "->", rows[1].get(k))
sys.exit(1 if diff else 0)
EOF
