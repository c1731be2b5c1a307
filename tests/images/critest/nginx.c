/* nginx.c — /usr/sbin/nginx of the critest stand-ins for e2e-test-images/nginx and
 * hostnet-nginx. What critest looks at, and nothing more:
 *   - a process whose comm is "nginx" and whose cmdline reads like nginx's master
 *     ("nginx: master process ..."), its pid written to /var/run/nginx.pid;
 *   - HTTP on $NGINX_PORT (default 80) serving /usr/share/nginx/html, done by a child
 *     busybox httpd in the foreground;
 *   - TERM/INT/QUIT/HUP passed to that child; the master exits when it has gone, and
 *     reaps whatever else it inherits meanwhile (it can be pid 1). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char title[] = "nginx: master process nginx -g daemon off;";
static volatile sig_atomic_t child = -1, got_signal;

static void pass_on(int sig)
{
	got_signal = 1;
	if (child > 0)
		kill(child, sig);
}

int main(int argc, char **argv)
{
	const char *port = getenv("NGINX_PORT");
	char *httpd[] = { "httpd", "-f", "-p", NULL, "-h", "/usr/share/nginx/html", NULL };
	int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP }, status;
	FILE *f;

	/* exec ourselves by path with the master's title as argv[0]: the kernel keeps
	 * comm "nginx" (from the path) and /proc/self/cmdline shows the title */
	if (argc < 1 || strcmp(argv[0], title) != 0) {
		char *again[] = { (char *)title, NULL };
		execv("/usr/sbin/nginx", again);
		perror("nginx: exec /usr/sbin/nginx");
		return 1;
	}
	httpd[3] = (char *)(port && *port ? port : "80");
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], pass_on);
	child = fork();
	if (child < 0) {
		perror("nginx: fork");
		return 1;
	}
	if (child == 0) {
		execv("/bin/httpd", httpd);
		perror("nginx: exec /bin/httpd");
		_exit(127);
	}
	f = fopen("/var/run/nginx.pid", "w");
	if (f) {
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	for (;;) {
		pid_t p = wait(&status);
		if (p == child)
			return got_signal ? 0 : (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
		if (p < 0 && errno != EINTR)
			return 1;
	}
}
