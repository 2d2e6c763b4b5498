/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/start.S: entry point of the test guest, at 0x100000, in
 * 32-bit protected mode (flat segments, paging and interrupts off) with
 * EBX = the info block's address.  Clears .bss, takes its own stack, calls
 * guest_main(EBX).
 */
    .code32
    .section .text.start, "ax"
    .globl _start
_start:
    cli
    cld
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx               /* .bss is 16-byte aligned and sized */
    xorl %eax, %eax
    rep stosl
    movl $__stack_top, %esp
    pushl %ebx
    call guest_main
1:  cli
    hlt
    jmp 1b
    .section .note.GNU-stack, "", @progbits
