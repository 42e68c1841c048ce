#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# It needs ../shared/corpora (EmoDB and EMOVO) beside the repository, and the web page's
# end-to-end test drives Debian's Chromium: when /usr/bin/chromium is missing it is installed
# here (apt-get, as root or through sudo) instead of failing the test run.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_svm.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    echo "scripts/test.sh: installing Debian's chromium for the web page test" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
fi
exec python -m pytest -q -p no:cacheprovider "$@"
