/*
 * ipcmk: a minimal stand-in for util-linux `ipcmk -M SIZE`, shipped in the
 * harness busybox image (Debian's busybox has no ipcmk applet). It creates a
 * System V shared memory segment in the caller's IPC namespace, prints
 * "Shared memory id: N" and exits; the segment stays until removed or until
 * the IPC namespace goes away, so another container of the same pod can find
 * it with `ipcs -m` or in /proc/sysvipc/shm.
 * Build: gcc -static -Os -s -o ipcmk ipcmk.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
	char *end;
	unsigned long size;
	int id;

	if (argc != 3 || strcmp(argv[1], "-M") != 0) {
		fprintf(stderr, "usage: ipcmk -M SIZE\n");
		return 2;
	}
	size = strtoul(argv[2], &end, 0);
	if (*argv[2] == '\0' || *end != '\0' || size == 0) {
		fprintf(stderr, "ipcmk: bad size %s\n", argv[2]);
		return 2;
	}
	id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0644);
	if (id < 0) {
		perror("ipcmk: shmget");
		return 1;
	}
	printf("Shared memory id: %d\n", id);
	return 0;
}
