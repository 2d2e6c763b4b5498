/* SPDX-License-Identifier: MIT */
/*
 * fuzz/replay.c: runs a harness over files and folders of inputs, without
 * libFuzzer, so that the corpus and every saved crash are ordinary tests.
 *   fuzz-replay-NAME PATH...
 * An input fails when the harness returns anything but 0 (or crashes: a
 * sanitizer report ends the process).  Files whose names start with '.' or
 * with "README" are not inputs (a crash folder may hold only its README).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    size_t got = data ? fread(data, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!data || got != (size_t)n) {
        fprintf(stderr, "%s: read failed\n", path);
        free(data);
        return 1;
    }
    int r = LLVMFuzzerTestOneInput(data, got);
    free(data);
    if (r != 0) {
        fprintf(stderr, "%s: the harness returned %d\n", path, r);
        return 1;
    }
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path, int *count)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return 1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
            continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) /* qsort(NULL, 0, ...) is undefined: a crash folder may hold only its README */
        qsort(names, n, sizeof *names, cmp);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        bad += run_path(full, count);
        free(names[i]);
    }
    free(names);
    return bad;
}

int main(int argc, char **argv)
{
    int bad = 0, count = 0;
    for (int i = 1; i < argc; i++)
        bad += run_path(argv[i], &count);
    printf("%d passed, %d failed\n", count - bad, bad);
    return bad;
}
