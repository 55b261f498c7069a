#include "uart_bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <avr_uart.h>
#include <sim_irq.h>

enum { BRIDGE_IRQ_FROM_AVR = 0, BRIDGE_IRQ_TO_AVR, BRIDGE_IRQ_COUNT };
static const char *irq_names[BRIDGE_IRQ_COUNT] = {
	[BRIDGE_IRQ_FROM_AVR] = "8<zima_uart.from_avr",
	[BRIDGE_IRQ_TO_AVR] = "8>zima_uart.to_avr",
};

static void on_byte_from_avr(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	uart_bridge *b = param;
	if (!b->client || b->to_host_len >= sizeof(b->to_host)) {
		b->dropped_to_host++;
		return;
	}
	b->to_host[b->to_host_len++] = (uint8_t)value;
}

static void feed_avr(uart_bridge *b)
{
	while (b->xon && b->to_avr_len > 0) {
		uint8_t byte = b->to_avr[b->to_avr_head];
		b->to_avr_head = (b->to_avr_head + 1) % sizeof(b->to_avr);
		b->to_avr_len--;
		b->bytes_to_avr++;
		avr_raise_irq(b->irq + BRIDGE_IRQ_TO_AVR, byte); /* may call on_xoff */
	}
}

static void on_xon(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	uart_bridge *b = param;
	b->xon = true;
	feed_avr(b);
}

static void on_xoff(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	((uart_bridge *)param)->xon = false;
}

static int make_link(const char *target, const char *link, char *err, size_t err_len)
{
	struct stat st;
	if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
		snprintf(err, err_len, "%s exists and is not a symlink; not replacing it", link);
		return -1;
	}
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", link, (long)getpid());
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
		snprintf(err, err_len, "cannot link %s -> %s: %s", link, target, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int uart_bridge_open(uart_bridge *b, avr_t *avr, char uart, const char *link, char *err,
		size_t err_len)
{
	memset(b, 0, sizeof(*b));
	b->avr = avr;
	b->master = -1;
	b->xon = true; /* until the UART says its input FIFO is full */

	int master, slave;
	if (openpty(&master, &slave, b->device, NULL, NULL) != 0) {
		snprintf(err, err_len, "openpty: %s", strerror(errno));
		return -1;
	}
	/* Raw both ways: no echo of our output back into the AVR, no line editing, no CR/LF
	 * translation. The setting stays with the pty while the master is open; pyserial
	 * sets raw mode again when it opens the port. */
	struct termios tio;
	tcgetattr(slave, &tio);
	cfmakeraw(&tio);
	cfsetispeed(&tio, B115200);
	cfsetospeed(&tio, B115200);
	tcsetattr(slave, TCSANOW, &tio);
	close(slave); /* from now on POLLHUP on the master means "nobody has the port open" */
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
	fcntl(master, F_SETFD, FD_CLOEXEC);
	b->master = master;

	if (link && *link) {
		if (make_link(b->device, link, err, err_len) != 0) {
			close(master);
			b->master = -1;
			return -1;
		}
		snprintf(b->link, sizeof(b->link), "%s", link);
	}

	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS(uart), &flags);
	flags &= ~(uint32_t)AVR_UART_FLAG_STDIO;
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS(uart), &flags);

	b->irq = avr_alloc_irq(&avr->irq_pool, 0, BRIDGE_IRQ_COUNT, irq_names);
	avr_irq_t *out = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_OUTPUT);
	avr_irq_t *in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_INPUT);
	avr_irq_t *xon = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_OUT_XON);
	avr_irq_t *xoff = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_OUT_XOFF);
	if (!out || !in) {
		snprintf(err, err_len, "this MCU has no UART%c", uart);
		return -1;
	}
	avr_irq_register_notify(b->irq + BRIDGE_IRQ_FROM_AVR, on_byte_from_avr, b);
	avr_connect_irq(out, b->irq + BRIDGE_IRQ_FROM_AVR);
	avr_connect_irq(b->irq + BRIDGE_IRQ_TO_AVR, in);
	if (xon)
		avr_irq_register_notify(xon, on_xon, b);
	if (xoff)
		avr_irq_register_notify(xoff, on_xoff, b);
	return 0;
}

enum uart_bridge_change uart_bridge_service(uart_bridge *b)
{
	enum uart_bridge_change change = UART_BRIDGE_SAME;
	struct pollfd pfd = { .fd = b->master, .events = POLLIN | POLLOUT };
	if (poll(&pfd, 1, 0) < 0)
		return change;
	bool client = !(pfd.revents & POLLHUP);
	if (client != b->client) {
		b->client = client;
		change = client ? UART_BRIDGE_OPENED : UART_BRIDGE_CLOSED;
		b->to_host_len = 0;
	}
	if (!client)
		return change;

	/* host -> AVR: read only what fits, the rest waits in the kernel's pty buffer */
	if (pfd.revents & POLLIN) {
		while (b->to_avr_len < sizeof(b->to_avr)) {
			size_t tail = (b->to_avr_head + b->to_avr_len) % sizeof(b->to_avr);
			size_t room = sizeof(b->to_avr) - b->to_avr_len;
			if (tail + room > sizeof(b->to_avr))
				room = sizeof(b->to_avr) - tail;
			ssize_t n = read(b->master, b->to_avr + tail, room);
			if (n <= 0)
				break;
			b->to_avr_len += (size_t)n;
		}
	}
	feed_avr(b);

	/* AVR -> host */
	if (b->to_host_len > 0) {
		ssize_t n = write(b->master, b->to_host, b->to_host_len);
		if (n > 0) {
			b->bytes_to_host += (uint64_t)n;
			memmove(b->to_host, b->to_host + n, b->to_host_len - (size_t)n);
			b->to_host_len -= (size_t)n;
		}
	}
	return change;
}

void uart_bridge_close(uart_bridge *b)
{
	if (b->link[0]) {
		char target[PATH_MAX];
		ssize_t n = readlink(b->link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			if (strcmp(target, b->device) == 0)
				unlink(b->link);
		}
	}
	if (b->master >= 0)
		close(b->master);
	b->master = -1;
}
