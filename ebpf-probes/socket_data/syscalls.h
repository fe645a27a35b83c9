/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Which syscall moved the bytes, and where its arguments put them. */
#pragma once

#include "vmlinux.h"
#include "sonde_abi.h"

#define MSG_PEEK 2

/* Socket-layer hooks do not know their syscall: it is read from the saved registers. */
#define SYS_FROM_REGS 0

/* How a syscall lays out its payload arguments. */
enum payload_shape {
    SHAPE_BUF,  /* (fd, buf, len): read, write, recvfrom, sendto */
    SHAPE_IOV,  /* (fd, iov, iovcnt): readv, writev */
    SHAPE_MSG,  /* (fd, msghdr): recvmsg, sendmsg */
    SHAPE_NONE, /* (out_fd, in_fd, ...): sendfile, splice: no bytes in user memory */
};

static __always_inline enum payload_shape shape_of(__u8 sys) {
    switch (sys) {
    case SONDE_SYS_READ:
    case SONDE_SYS_WRITE:
    case SONDE_SYS_RECVFROM:
    case SONDE_SYS_SENDTO:
        return SHAPE_BUF;
    case SONDE_SYS_READV:
    case SONDE_SYS_WRITEV:
        return SHAPE_IOV;
    case SONDE_SYS_RECVMSG:
    case SONDE_SYS_SENDMSG:
        return SHAPE_MSG;
    default:
        return SHAPE_NONE;
    }
}

/* The syscall a socket-layer hook fired inside (x86_64 numbers), or 0 for one whose
 * arguments do not describe these bytes: io_uring, recvmmsg/sendmmsg (counted as
 * SONDE_DROP_UNDECODED), or a direction the syscall cannot have. */
static __always_inline __u8 syscall_of_regs(const struct pt_regs *regs, __u8 dir) {
    long nr = regs->orig_ax;
    if (dir == SONDE_DIR_INGRESS) {
        switch (nr) {
        case 0:
            return SONDE_SYS_READ;
        case 19:
            return SONDE_SYS_READV;
        case 45:
            return SONDE_SYS_RECVFROM;
        case 47:
            return SONDE_SYS_RECVMSG;
        }
        return 0;
    }
    switch (nr) {
    case 1:
        return SONDE_SYS_WRITE;
    case 20:
        return SONDE_SYS_WRITEV;
    case 44:
        return SONDE_SYS_SENDTO;
    case 46:
        return SONDE_SYS_SENDMSG;
    case 40:
        return SONDE_SYS_SENDFILE;
    case 275:
        return SONDE_SYS_SPLICE;
    }
    return 0;
}
