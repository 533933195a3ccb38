/*
 * ipcmk: a minimal stand-in for util-linux `ipcmk -M SIZE` and `ipcs [-m]`,
 * shipped in the harness busybox image (Debian's busybox has neither
 * applet); it is installed under both names and acts by the name it is run
 * as.
 *   ipcmk -M SIZE  creates a System V shared memory segment in the caller's
 *                  IPC namespace, prints "Shared memory id: N" and exits; the
 *                  segment stays until removed or until the IPC namespace
 *                  goes away, so another container of the same pod can find
 *                  it with `ipcs -m`.
 *   ipcs [-m]      lists the segments of the caller's IPC namespace, asking
 *                  the kernel (shmctl SHM_INFO, then SHM_STAT per index), not
 *                  /proc/sysvipc/shm, which an application kernel (gVisor)
 *                  may not have.
 * Build: gcc -static -Os -s -o ipcmk ipcmk.c
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static int ipcs(int argc, char **argv) {
	struct shm_info info;
	struct shmid_ds ds;
	int max, i, id;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "-m") != 0)) {
		fprintf(stderr, "usage: ipcs [-m]\n");
		return 2;
	}
	max = shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
	if (max < 0) {
		perror("ipcs: shmctl SHM_INFO");
		return 1;
	}
	printf("\n------ Shared Memory Segments --------\n");
	printf("key        shmid      owner      perms      bytes      nattch\n");
	for (i = 0; i <= max; i++) {
		id = shmctl(i, SHM_STAT, &ds);
		if (id < 0)
			continue; /* a free index, or one removed meanwhile */
		printf("0x%08x %-10d %-10u %-10o %-10lu %-10lu\n", (unsigned)ds.shm_perm.__key, id,
		       (unsigned)ds.shm_perm.uid, (unsigned)(ds.shm_perm.mode & 0777),
		       (unsigned long)ds.shm_segsz, (unsigned long)ds.shm_nattch);
	}
	printf("\n");
	return 0;
}

static int ipcmk(int argc, char **argv) {
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

int main(int argc, char **argv) {
	if (strcmp(basename(argv[0]), "ipcs") == 0)
		return ipcs(argc, argv);
	return ipcmk(argc, argv);
}
