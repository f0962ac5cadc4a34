/* petri-agent: the guest side of petri_nb's agent channel (see petri_nb/agent.py).
 *
 * Runs in the Linux test guest's initramfs. Reads request frames from the
 * virtio-serial port named "petri.agent" and answers with frames, so command
 * output may hold any bytes. A frame is: "PA", one type byte, a 4-byte request
 * id and a 4-byte payload length (both big-endian), then the payload.
 *
 * Requests:  'P' ping, 'X' run payload with /bin/sh -c, 'r' read file at payload,
 *            'w' write file (payload = path NUL data), 'B' reboot, 'K' kill the
 *            running command.
 * Replies:   'P' pong, 'O' stdout chunk, 'E' stderr chunk, 'D' file data chunk,
 *            'S' done (payload: 4-byte exit status), 'F' failed (payload: message).
 *
 * A forked child also watches /dev/input/event* for the ACPI power button and
 * powers the guest off, so QMP system_powerdown is a guest-cooperative shutdown.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK 65536
#define MAX_PAYLOAD (256u << 20)

static int port = -1;

static int read_exact(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* host gone: drop the rest, it resynchronises by id */
        p += w;
        n -= (size_t)w;
    }
}

static void put32(unsigned char *b, uint32_t v) {
    b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v;
}

static uint32_t get32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void send_frame(char type, uint32_t id, const void *data, uint32_t len) {
    unsigned char h[11] = {'P', 'A', (unsigned char)type};
    put32(h + 3, id);
    put32(h + 7, len);
    write_all(port, h, sizeof h);
    if (len) write_all(port, data, len);
}

static void send_status(uint32_t id, int32_t status) {
    unsigned char b[4];
    put32(b, (uint32_t)status);
    send_frame('S', id, b, 4);
}

static void send_fail(uint32_t id, const char *what, const char *path) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(errno));
    send_frame('F', id, msg, (uint32_t)strlen(msg));
}

/* Next frame header: scans for the "PA" marker so stray bytes cannot wedge us. */
static int read_header(char *type, uint32_t *id, uint32_t *len) {
    unsigned char c, h[9];
    for (;;) {
        if (read_exact(port, &c, 1)) return -1;
        if (c != 'P') continue;
        if (read_exact(port, &c, 1)) return -1;
        if (c == 'A') break;
    }
    if (read_exact(port, h, 9)) return -1;
    *type = (char)h[0];
    *id = get32(h + 1);
    *len = get32(h + 5);
    return 0;
}

static void run(uint32_t id, char *cmd) {
    int out[2], err[2];
    if (pipe(out) || pipe(err)) { send_fail(id, "pipe", ""); return; }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0); dup2(out[1], 1); dup2(err[1], 2);
        close(out[0]); close(err[0]); close(port);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(out[1]); close(err[1]);
    if (pid < 0) { close(out[0]); close(err[0]); send_fail(id, "fork", ""); return; }
    static char buf[CHUNK];
    struct pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {port, POLLIN, 0}};
    int open_pipes = 2;
    while (open_pipes) {
        if (poll(fds, 3, -1) < 0) { if (errno == EINTR) continue; break; }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) { send_frame(i ? 'E' : 'O', id, buf, (uint32_t)n); continue; }
            if (n < 0 && errno == EINTR) continue;
            close(fds[i].fd);
            fds[i].fd = -1;
            open_pipes--;
        }
        if (fds[2].revents & POLLIN) {
            /* The host may only send 'K' while a command runs. */
            char t; uint32_t kid, len;
            if (read_header(&t, &kid, &len) == 0 && t == 'K' && len == 0) kill(-pid, SIGKILL);
        } else if (fds[2].revents & POLLHUP) {
            fds[2].fd = -1; /* host not connected: keep the output flowing, it is dropped */
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    send_status(id, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static void read_file(uint32_t id, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { send_fail(id, "cannot open", path); return; }
    static char buf[CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { send_fail(id, "cannot read", path); close(fd); return; }
        if (n == 0) break;
        send_frame('D', id, buf, (uint32_t)n);
    }
    close(fd);
    send_status(id, 0);
}

static void write_file(uint32_t id, char *payload, uint32_t len) {
    size_t plen = strnlen(payload, len);
    if (plen == len) { errno = EINVAL; send_fail(id, "bad write request", ""); return; }
    int fd = open(payload, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { send_fail(id, "cannot create", payload); return; }
    const char *p = payload + plen + 1;
    size_t left = len - plen - 1;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { send_fail(id, "cannot write", payload); close(fd); return; }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd)) { send_fail(id, "cannot write", payload); return; }
    send_status(id, 0);
}

static void watch_power_button(void) {
    struct pollfd fds[16];
    int n = 0;
    DIR *d = opendir("/dev/input");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 16) {
        if (strncmp(e->d_name, "event", 5)) continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) fds[n++] = (struct pollfd){fd, POLLIN, 0};
    }
    if (d) closedir(d);
    while (n && poll(fds, n, -1) >= 0) {
        for (int i = 0; i < n; i++) {
            struct input_event ev;
            if (!(fds[i].revents & POLLIN) || read(fds[i].fd, &ev, sizeof ev) != sizeof ev) continue;
            if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1) {
                sync();
                reboot(RB_POWER_OFF);
            }
        }
    }
}

static int open_port(void) {
    /* No udev in the initramfs: find the port by its name in sysfs. */
    for (;;) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char path[300], name[64] = "";
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            if (!fgets(name, sizeof name, f)) name[0] = 0;
            fclose(f);
            if (strncmp(name, "petri.agent", 11) == 0) {
                snprintf(path, sizeof path, "/dev/%s", e->d_name);
                int fd = open(path, O_RDWR);
                if (fd >= 0) { closedir(d); return fd; }
            }
        }
        if (d) closedir(d);
        usleep(100000);
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (fork() == 0) { watch_power_button(); _exit(0); }
    port = open_port();
    for (;;) {
        char type;
        uint32_t id, len;
        if (read_header(&type, &id, &len)) { usleep(50000); continue; } /* host not connected */
        if (len > MAX_PAYLOAD) continue;
        char *payload = malloc(len + 1);
        if (!payload) continue;
        if (read_exact(port, payload, len)) { free(payload); continue; }
        payload[len] = 0;
        switch (type) {
        case 'P': send_frame('P', id, NULL, 0); break;
        case 'X': run(id, payload); break;
        case 'r': read_file(id, payload); break;
        case 'w': write_file(id, payload, len); break;
        case 'B': send_status(id, 0); sync(); reboot(RB_AUTOBOOT); break;
        default: break; /* 'K' for a command already finished, or unknown: ignore */
        }
        free(payload);
    }
}
