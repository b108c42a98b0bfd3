// CSystemd: the sd-daemon(3) half of libsystemd: socket activation (sd_listen_fds_with_names),
// readiness/status/watchdog notification (sd_notify, sd_watchdog_enabled) and sd_is_socket.
// A header of its own because SwiftPM reaches a system library only through a module map.
#ifndef TEND_CSYSTEMD_H
#define TEND_CSYSTEMD_H
#include <systemd/sd-daemon.h>
#endif
