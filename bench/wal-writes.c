/* How much CPU the WAL's many small writes cost against one write of the same bytes.
 * A commit of ~20 messages appends ~62 WAL frames; SQLite writes each as a 24-byte header
 * and a 4 KB page (124 pwrite calls). This writes 2,000 such commits over the same region of
 * a file (the WAL starts over after each checkpoint), syncing every 20, in both shapes.
 *   cc -O2 bench/wal-writes.c -o /tmp/wal-writes && /tmp/wal-writes FILE   (FILE on the disk under test)
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FRAMES 62
#define FRAME (24 + 4096)

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static char joined[FRAMES * FRAME];

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    char header[24], page[4096];
    memset(header, 1, sizeof header);
    memset(page, 2, sizeof page);
    for (int round = 0; round < 3; round++) {
        for (int joined_up = 0; joined_up < 2; joined_up++) {
            int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) { perror(argv[1]); return 1; }
            const int commits = 2000;
            double t0 = cpu_us();
            for (int c = 0; c < commits; c++) {
                off_t off = 32;
                if (!joined_up) {
                    for (int f = 0; f < FRAMES; f++, off += FRAME) {
                        pwrite(fd, header, sizeof header, off);
                        pwrite(fd, page, sizeof page, off + sizeof header);
                    }
                } else {
                    for (int f = 0; f < FRAMES; f++) {
                        memcpy(joined + f * FRAME, header, sizeof header);
                        memcpy(joined + f * FRAME + sizeof header, page, sizeof page);
                    }
                    for (size_t done = 0; done < sizeof joined; done += 124 * 1024) {
                        size_t n = sizeof joined - done < 124 * 1024 ? sizeof joined - done : 124 * 1024;
                        pwrite(fd, joined + done, n, off + done);
                    }
                }
                if (c % 20 == 19) fdatasync(fd);
            }
            printf("%-28s %6.1f us of CPU per commit\n",
                   joined_up ? "one write per 124 KB:" : "two writes per frame:",
                   (cpu_us() - t0) / commits);
            close(fd);
        }
    }
    unlink(argv[1]);
    return 0;
}
