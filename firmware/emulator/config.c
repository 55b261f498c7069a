/* zima-emu's command line: options into a config (emu.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "emu.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zima-emu [options] FIRMWARE.elf\n"
		"  --pty PATH              symlink PATH to the UART0 pseudo-terminal\n"
		"  --speed X               emulated time runs X times the wall clock (default 1)\n"
		"  --unpaced               run as fast as the host allows (breaks timeouts)\n"
		"  --state-hz HZ           periodic state lines on stdout (default 10, 0 = off)\n"
		"  --tau-ms MS             track speed time constant (default 100)\n"
		"  --max-speed-mm-s V      track speed at full duty, no load (default 1000)\n"
		"  --ticks-per-m N         encoder counts per metre (default 4000)\n"
		"  --divider R             battery divider ratio, pack/pin (default 4.0)\n"
		"  --battery-mv MV         full-charge open-circuit pack voltage (default 12000)\n"
		"  --battery-empty-mv MV   open-circuit voltage when empty (default 9000)\n"
		"  --capacity-mah C        pack capacity (default 2200)\n"
		"  --internal-mohm R       pack internal resistance (default 100)\n"
		"  --motor-ma I            one motor's current at full duty (default 1500)\n"
		"  --idle-ma I             constant draw of everything else (default 0)\n"
		"  --no-discharge          keep the open-circuit voltage where it is set\n"
		"  --reset-on-open         reset the MCU when a program opens the port (DTR)\n"
		"  --physics-us US         model step (default 20)\n"
		"  --wheels-min-edge-us US external wheels: closest edges of one encoder (default 50)\n"
		"  --wheels-max-spread-ms MS  external wheels: longest walk to one command's counts\n"
		"                          at the even rate (default 100)\n"
		"  --max-lag-ms MS         paced: largest wall-clock lag made up (default 100)\n"
		"  --simavr-log N          simavr log level to stderr (default 1 = errors)\n");
}

enum {
	OPT_PTY = 1000, OPT_SPEED, OPT_UNPACED, OPT_STATE_HZ, OPT_TAU, OPT_MAX_SPEED, OPT_TICKS,
	OPT_DIVIDER, OPT_BATT, OPT_BATT_EMPTY, OPT_CAPACITY, OPT_RINT, OPT_MOTOR_MA, OPT_IDLE_MA,
	OPT_NO_DISCHARGE, OPT_RESET_ON_OPEN, OPT_PHYSICS_US, OPT_MAX_LAG, OPT_SIMAVR_LOG, OPT_WHEELS_MIN_EDGE,
	OPT_WHEELS_MAX_SPREAD, OPT_HELP,
};

static double parse_number(const char *name, const char *text, double min, double max)
{
	char *end = NULL;
	double v = strtod(text, &end);
	if (end == text || *end || !isfinite(v) || v < min || v > max) {
		fprintf(stderr, "zima-emu: --%s wants a number in [%g, %g], got '%s'\n", name, min,
			max, text);
		exit(2);
	}
	return v;
}

void parse_args(int argc, char **argv, config *c)
{
	static const struct option opts[] = {
		{ "pty", required_argument, 0, OPT_PTY },
		{ "speed", required_argument, 0, OPT_SPEED },
		{ "unpaced", no_argument, 0, OPT_UNPACED },
		{ "state-hz", required_argument, 0, OPT_STATE_HZ },
		{ "tau-ms", required_argument, 0, OPT_TAU },
		{ "max-speed-mm-s", required_argument, 0, OPT_MAX_SPEED },
		{ "ticks-per-m", required_argument, 0, OPT_TICKS },
		{ "divider", required_argument, 0, OPT_DIVIDER },
		{ "battery-mv", required_argument, 0, OPT_BATT },
		{ "battery-empty-mv", required_argument, 0, OPT_BATT_EMPTY },
		{ "capacity-mah", required_argument, 0, OPT_CAPACITY },
		{ "internal-mohm", required_argument, 0, OPT_RINT },
		{ "motor-ma", required_argument, 0, OPT_MOTOR_MA },
		{ "idle-ma", required_argument, 0, OPT_IDLE_MA },
		{ "no-discharge", no_argument, 0, OPT_NO_DISCHARGE },
		{ "reset-on-open", no_argument, 0, OPT_RESET_ON_OPEN },
		{ "physics-us", required_argument, 0, OPT_PHYSICS_US },
		{ "max-lag-ms", required_argument, 0, OPT_MAX_LAG },
		{ "simavr-log", required_argument, 0, OPT_SIMAVR_LOG },
		{ "wheels-min-edge-us", required_argument, 0, OPT_WHEELS_MIN_EDGE },
		{ "wheels-max-spread-ms", required_argument, 0, OPT_WHEELS_MAX_SPREAD },
		{ "help", no_argument, 0, OPT_HELP },
		{ 0, 0, 0, 0 },
	};
	*c = (config){
		.speed = 1.0, .state_hz = 10, .physics_us = 20, .max_lag_ms = 100, .divider = 4.0,
		.battery_mv = 12000, .wheels_min_edge_us = 50, .wheels_max_spread_ms = 100,
		.simavr_log = LOG_ERROR,
		.track = { .tau_s = 0.100, .max_speed_m_s = 1.0, .ticks_per_m = 4000 },
		.battery = { .capacity_mah = 2200, .empty_mv = 9000, .internal_mohm = 100,
			     .motor_ma = 1500, .idle_ma = 0, .discharge = true },
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_PTY: c->pty_link = optarg; break;
		case OPT_SPEED: c->speed = parse_number("speed", optarg, 0.001, 1000); break;
		case OPT_UNPACED: c->speed = 0; break;
		case OPT_STATE_HZ: c->state_hz = parse_number("state-hz", optarg, 0, 1000); break;
		case OPT_TAU: c->track.tau_s = parse_number("tau-ms", optarg, 0, 1e5) / 1000; break;
		case OPT_MAX_SPEED:
			c->track.max_speed_m_s = parse_number("max-speed-mm-s", optarg, 0, 1e5) / 1000;
			break;
		case OPT_TICKS: c->track.ticks_per_m = parse_number("ticks-per-m", optarg, 1, 1e7); break;
		case OPT_DIVIDER: c->divider = parse_number("divider", optarg, 1, 100); break;
		case OPT_BATT: c->battery_mv = parse_number("battery-mv", optarg, 0, 100000); break;
		case OPT_BATT_EMPTY:
			c->battery.empty_mv = parse_number("battery-empty-mv", optarg, 0, 100000);
			break;
		case OPT_CAPACITY:
			c->battery.capacity_mah = parse_number("capacity-mah", optarg, 1, 1e7);
			break;
		case OPT_RINT: c->battery.internal_mohm = parse_number("internal-mohm", optarg, 0, 1e5); break;
		case OPT_MOTOR_MA: c->battery.motor_ma = parse_number("motor-ma", optarg, 0, 1e6); break;
		case OPT_IDLE_MA: c->battery.idle_ma = parse_number("idle-ma", optarg, 0, 1e6); break;
		case OPT_NO_DISCHARGE: c->battery.discharge = false; break;
		case OPT_RESET_ON_OPEN: c->reset_on_open = true; break;
		case OPT_PHYSICS_US: c->physics_us = parse_number("physics-us", optarg, 1, 10000); break;
		case OPT_MAX_LAG: c->max_lag_ms = parse_number("max-lag-ms", optarg, 0, 1e6); break;
		case OPT_SIMAVR_LOG: c->simavr_log = (int)parse_number("simavr-log", optarg, 0, 6); break;
		case OPT_WHEELS_MIN_EDGE:
			c->wheels_min_edge_us = parse_number("wheels-min-edge-us", optarg, 0, 1e6);
			break;
		case OPT_WHEELS_MAX_SPREAD:
			c->wheels_max_spread_ms = parse_number("wheels-max-spread-ms", optarg, 0, 1e5);
			break;
		case 'h':
		case OPT_HELP: usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(2);
	}
	c->firmware = argv[optind];
}

/* ---- the board ------------------------------------------------------------------------ */
