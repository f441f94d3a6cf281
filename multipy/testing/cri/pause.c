/* The test kit's pause: the process a pod sandbox's namespaces hang on. Blocks until SIGTERM or
 * SIGINT, reaps children (it is the pid namespace's init), exits 0. Built with gcc -static so the
 * image needs nothing else. Written for multipy's test kit. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop = {.sa_handler = done}, child = {.sa_handler = reap};
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;)
        pause();
}
