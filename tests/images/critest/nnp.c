/* nnp.c — the payload of the critest stand-in for e2e-test-images/nonewprivs.
 * Installed setuid root and run as uid 1000: it prints its effective uid, which is 0
 * unless no_new_privs stopped the setuid bit from taking effect. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %u\n", (unsigned)geteuid());
	return 0;
}
