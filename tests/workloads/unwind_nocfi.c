/* SPDX-License-Identifier: MIT */
/*
 * unwind_nocfi: code without call-frame information inside a program that has a table (its
 * other functions, crt's _start): a hand-written trampoline, as assembly often is, with a frame
 * pointer but no .cfi directives. Chain, innermost first:
 *
 *   malloc(5151) <- target <- nocfi_tramp (no FDE) <- caller <- main <- libc <- _start
 *
 * The DWARF unwinder must not take "no FDE covers this pc" for the outermost frame: it goes on
 * with frame pointers there, as in a module without a table.
 */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

void *volatile kept;
volatile int sink;

NOIPA void target(void)
{
	kept = malloc(5151);
	sink++;
}

void nocfi_tramp(void (*fn)(void));
asm(".text\n"
    ".globl nocfi_tramp\n"
    ".type nocfi_tramp, @function\n"
    "nocfi_tramp:\n"
    "	push %rbp\n"
    "	mov %rsp, %rbp\n"
    "	call *%rdi\n"
    "	nop\n"
    "	pop %rbp\n"
    "	ret\n"
    ".size nocfi_tramp, .-nocfi_tramp\n");

NOIPA void caller(void)
{
	nocfi_tramp(target);
	sink++;
}

int main(void)
{
	caller();
	printf("%p\n", kept);
	return 0;
}
