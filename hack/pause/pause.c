/*
 * pause: the pod infrastructure process for the containerd runc shim handler
 * in Magnetar's test harness (Magnetar's own sandboxers run without one).
 *
 * It blocks in sigsuspend() until SIGTERM or SIGINT (then exits 0) and reaps
 * every child that is re-parented to it, since it is PID 1 of the pod's PID
 * namespace when containers share it. Build: gcc -static -Os -s -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
	if (sig == SIGTERM || sig == SIGINT)
		stop_requested = 1;
}

int main(int argc, char **argv) {
	sigset_t block, wait_mask;
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("magnetar-pause 1");
		return 0;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);

	/* Deliver the signals only inside sigsuspend(): no lost wake-ups. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGCHLD);

	while (!stop_requested) {
		sigsuspend(&wait_mask);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	return 0;
}
