#!/usr/bin/env bash
# Prints the catkin workspace directory of this checkout: $DEPTH_MS_WS, or one under ~/.cache keyed by
# the checkout's path (so several clones on one machine never share a build).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${DEPTH_MS_WS:-}" ]]; then echo "$DEPTH_MS_WS"; exit 0; fi
echo "${XDG_CACHE_HOME:-$HOME/.cache}/depth_ms/ws-$(basename "$ROOT")-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)"
