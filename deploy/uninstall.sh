#!/usr/bin/env bash
# Remove the doorbell's services, users and program; keep /var/lib/doorbell (footage, keys,
# audit log) unless --purge is given. Same as `deploy/install.sh --uninstall [--purge]`.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/install.sh" --uninstall "$@"
