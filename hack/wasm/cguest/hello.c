/* hello.c: the small C test module of the wasm e2e tests and benchmark,
 * built with Debian's clang and wasi-libc (hack/wasm/images.sh):
 *   clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -Wl,--strip-all
 *
 *   hello.wasm            "hello from C" on stdout, "C on stderr" on stderr
 *   hello.wasm exit N     exit with N
 *   hello.wasm trap       execute `unreachable` (a trap)
 *   hello.wasm sleep S    print "sleeping", sleep S seconds (poll_oneoff), "woke"
 *   hello.wasm idle       print "ready", then sleep forever
 *   hello.wasm cat FILE   print a file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
	if (argc < 2) {
		puts("hello from C");
		fputs("C on stderr\n", stderr);
		return 0;
	}
	const char *mode = argv[1];
	if (strcmp(mode, "exit") == 0 && argc > 2) {
		printf("exiting with %d\n", atoi(argv[2]));
		fflush(stdout);
		exit(atoi(argv[2]));
	}
	if (strcmp(mode, "trap") == 0) {
		puts("about to trap");
		fflush(stdout);
		__builtin_trap();
	}
	if (strcmp(mode, "sleep") == 0 && argc > 2) {
		struct timespec ts = {atoi(argv[2]), 0};
		puts("sleeping");
		fflush(stdout);
		nanosleep(&ts, NULL);
		puts("woke");
		return 0;
	}
	if (strcmp(mode, "idle") == 0) {
		puts("ready");
		fflush(stdout);
		for (;;) {
			struct timespec ts = {3600, 0};
			nanosleep(&ts, NULL);
		}
	}
	if (strcmp(mode, "cat") == 0 && argc > 2) {
		FILE *f = fopen(argv[2], "r");
		if (!f) {
			perror(argv[2]);
			return 1;
		}
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof buf, f)) > 0)
			fwrite(buf, 1, n, stdout);
		fclose(f);
		return 0;
	}
	fprintf(stderr, "hello.wasm: unknown mode %s\n", mode);
	return 2;
}
