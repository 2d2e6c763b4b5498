# SPDX-License-Identifier: MIT
# bash completion for vdisk: verbs, each verb's options (read from its
# --help, so they never drift from the program), formats after -f/-O/-F,
# create options after -o (from 'vdisk create -f FMT -o help'), cache and
# output modes, and file names everywhere else.
# Installed by 'cmake --install' into share/bash-completion/completions/.

_vdisk_formats="raw qcow2 qed vdi vmdk vpc vhdx parallels bochs cloop dmg"

_vdisk_verbs()
{
    "$1" --help 2>/dev/null | sed -n 's/^  vdisk \([a-z]*\).*/\1/p'
}

_vdisk_options()
{
    "$1" "$2" --help 2>/dev/null |
        grep -oE -- '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*=?' |
        sed 's/^[][ ,|(]*//' | sort -u
}

_vdisk()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion -n = || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    local prog=${words[0]} verb=${words[1]}

    if ((cword == 1)); then
        COMPREPLY=($(compgen -W "$(_vdisk_verbs "$prog") help --help --version" -- "$cur"))
        return
    fi
    case $verb in
    help)
        ((cword == 2)) && COMPREPLY=($(compgen -W "$(_vdisk_verbs "$prog")" -- "$cur"))
        return ;;
    part)
        if ((cword == 2)); then
            COMPREPLY=($(compgen -W "list dump apply create add delete resize set verify repair" -- "$cur"))
            return
        fi ;;
    iso)
        if ((cword == 2)); then
            COMPREPLY=($(compgen -W "info ls cat extract" -- "$cur"))
            return
        fi ;;
    esac

    case $prev in
    -f | -O | -F | --format)
        COMPREPLY=($(compgen -W "$_vdisk_formats" -- "$cur"))
        return ;;
    -t | -T | --cache)
        COMPREPLY=($(compgen -W "none writeback writethrough directsync unsafe" -- "$cur"))
        return ;;
    -r)
        if [[ $verb == check ]]; then
            COMPREPLY=($(compgen -W "leaks all" -- "$cur"))
            return
        fi ;;
    -o)
        # -o describes the new image: -O's format for convert and measure,
        # -f's for create and amend.
        local fmt=qcow2 flag=-f i
        [[ $verb == convert || $verb == measure ]] && flag=-O
        for ((i = 2; i < cword - 1; i++)); do
            [[ ${words[i]} == "$flag" ]] && fmt=${words[i+1]}
        done
        local opts
        opts=$("$prog" create -f "$fmt" -o help 2>/dev/null | sed -n 's/^  \([a-z_0-9.]*\)=.*/\1=/p')
        local head=${cur%,*} tail=${cur##*,}
        [[ $head == "$cur" ]] && head= || head="$head,"
        compopt -o nospace 2>/dev/null
        COMPREPLY=($(compgen -P "$head" -W "$opts" -- "$tail"))
        return ;;
    esac
    case $cur in
    --output=*)
        COMPREPLY=($(compgen -W "human json" -- "${cur#--output=}"))
        return ;;
    -*)
        COMPREPLY=($(compgen -W "$(_vdisk_options "$prog" "$verb")" -- "$cur"))
        [[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
        return ;;
    esac
    compopt -o default 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}
complete -F _vdisk vdisk
