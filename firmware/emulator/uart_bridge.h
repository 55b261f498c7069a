/* UART <-> pseudo-terminal bridge, serviced from the emulator's main loop.
 *
 * simavr's own uart_pty part was studied and not used: in Debian's simavr 1.6 it prints
 * to stdout (our JSON channel), raises UART IRQs from its own thread while avr_run()
 * executes on the main thread, and always symlinks the fixed path /tmp/simavr-uart0,
 * which parallel emulators would fight over. This bridge does the same job on one
 * thread: bytes from the AVR's UART_IRQ_OUTPUT go to the pty master; bytes from the
 * host are fed to UART_IRQ_INPUT while the UART says XON (simavr then delivers them to
 * UDR at the baud rate); the UART's stdio echo (AVR_UART_FLAG_STDIO) is switched off.
 *
 * Like a real Mega's USB-serial chip, output is dropped while no program has the port
 * open (the master sees POLLHUP); the bridge reports opens and closes so that the
 * harness can emulate the DTR auto-reset of a real board if asked to.
 */
#ifndef ZIMA_EMU_UART_BRIDGE_H
#define ZIMA_EMU_UART_BRIDGE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sim_avr.h>

typedef struct uart_bridge {
	avr_t *avr;
	avr_irq_t *irq;          /* ours: [0] byte from the AVR, [1] byte to the AVR */
	int master;
	char device[64];         /* the pty slave, e.g. /dev/pts/7 */
	char link[PATH_MAX];     /* our symlink to it ("" for none) */
	bool xon;
	bool client;             /* a program has the port open */
	uint8_t to_avr[4096];
	size_t to_avr_head, to_avr_len;
	uint8_t to_host[8192];
	size_t to_host_len;
	uint64_t bytes_to_avr, bytes_to_host, dropped_to_host;
} uart_bridge;

/* Creates the pty (raw mode), the symlink (if link is non-empty) and connects to UART
 * `uart` ('0'..'3'). Returns 0, or -1 with a message in err. */
int uart_bridge_open(uart_bridge *b, avr_t *avr, char uart, const char *link, char *err,
		size_t err_len);

enum uart_bridge_change { UART_BRIDGE_SAME, UART_BRIDGE_OPENED, UART_BRIDGE_CLOSED };

/* Moves bytes both ways; returns whether a client opened or closed the port since the
 * last call. Never blocks. */
enum uart_bridge_change uart_bridge_service(uart_bridge *b);

void uart_bridge_close(uart_bridge *b);

#endif
