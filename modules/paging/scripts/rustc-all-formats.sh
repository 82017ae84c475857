#!/bin/sh
# The workspace's rustc wrapper (`build.rustc-wrapper` in .cargo/config.toml):
# lets host builds see every PTE format of page_table_entry, which compiles its
# RISC-V, AArch64 and LoongArch modules only for their own targets or under
# `--cfg docsrs`. paging's tests run on all of them in a plain `cargo test`.
#
# On a host unit (no `--target`, or `--target` = the host triple) it adds
# `--cfg docsrs` only where needed: cargo's target-cfg query (so the format
# modules' dependencies, e.g. aarch64-cpu, are resolved for the host),
# page_table_entry itself (with RUSTC_BOOTSTRAP=1, for its `feature(doc_cfg)`
# attribute under docsrs), and paging's own units (whose tests refuse to build
# without it). Everything else, and every unit built for another target (the
# kernels), is compiled exactly as without the wrapper. A global
# `--cfg docsrs` would break several other crates.
#
# cargo runs it as `wrapper rustc ARGS...`, or under clippy as
# `wrapper clippy-driver rustc ARGS...`: the first word is what to run.
rustc="$1"
shift

# The target of this unit, if given; compared with the host triple from the
# compiler itself (`rustc -vV`'s "host:" line; under clippy the real rustc is
# the next word).
real="$rustc"
case "$rustc" in *clippy-driver*) real="$1" ;; esac
target=
prev=
for a in "$@"; do
    case "$prev" in --target) target="$a" ;; esac
    case "$a" in --target=*) target="${a#--target=}" ;; esac
    prev="$a"
done
if [ -n "$target" ]; then
    host=$("$real" -vV 2>/dev/null | sed -n 's/^host: //p')
    [ "$target" = "$host" ] || exec "$rustc" "$@"
fi

case " $* " in
*" --crate-name page_table_entry "*)
    RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" --cfg docsrs ;;
*" --print"*|*"modules/paging/"*)
    exec "$rustc" "$@" --cfg docsrs ;;
*)
    exec "$rustc" "$@" ;;
esac
