#!/bin/sh
# RUSTC_WRAPPER that lets the host test build see every PTE format of
# page_table_entry (which compiles its RISC-V and AArch64 modules only for their
# own targets, or under `--cfg docsrs`).
#
# It adds `--cfg docsrs` only where needed: cargo's target-cfg query (so the
# format crates' dependencies are resolved), page_table_entry itself (with
# RUSTC_BOOTSTRAP=1, for its `feature(doc_cfg)` attribute under docsrs), and the
# paging crate's own units (which gate the extra format tests on it). Other
# crates are built as usual: a global `--cfg docsrs` breaks several of them.
#
# Usage (from the workspace root):
#   RUSTC_WRAPPER="$PWD/modules/paging/scripts/rustc-all-formats.sh" \
#   CARGO_TARGET_DIR=/tmp/target-paging-formats cargo test -p paging
rustc="$1"
shift
case " $* " in
*" --crate-name page_table_entry "*)
    RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" --cfg docsrs ;;
*" --print"*|*"modules/paging/"*)
    exec "$rustc" "$@" --cfg docsrs ;;
*)
    exec "$rustc" "$@" ;;
esac
