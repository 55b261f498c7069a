// The Zima console page: camera views, hold-to-drive (keyboard and gamepad), modes,
// e-stop, recording and the arm (jog the tool, named poses, the gripper, joint sliders),
// over one WebSocket to the robot (see server.py).
// Plain JS, no build step and nothing fetched from elsewhere: the robot may be offline.
"use strict";

const $ = (id) => document.getElementById(id);
const DRIVE_MS = 50; // drive messages while input is held (~20 Hz)
const HEARTBEAT_MS = 100; // keeps the lease while held; its timeout covers a lost network
const PRESENCE_MS = 1000; // "an operator is here": autonomy stops when these stop coming
const KEYS = {
  KeyW: "forward", ArrowUp: "forward", KeyS: "back", ArrowDown: "back",
  KeyA: "left", ArrowLeft: "left", KeyD: "right", ArrowRight: "right",
};
const JOINTS = ["base yaw", "shoulder", "elbow", "wrist pitch", "wrist roll", "gripper"];
const DEADZONE = 0.15;
// Hold to jog the tool point in the arm's frame (x forward, y left, z up; pitch down +):
// a key -> [jog velocity, direction]. None of them is a drive key (WASD, arrows, Space, H).
const ARM_KEYS = {
  KeyI: ["vx_m_s", 1], KeyK: ["vx_m_s", -1], KeyJ: ["vy_m_s", 1], KeyL: ["vy_m_s", -1],
  KeyU: ["vz_m_s", 1], KeyO: ["vz_m_s", -1], KeyT: ["vpitch_rad_s", 1],
  KeyG: ["vpitch_rad_s", -1], KeyZ: ["vroll_rad_s", -1], KeyX: ["vroll_rad_s", 1],
  KeyN: ["vgripper_m_s", 1], KeyM: ["vgripper_m_s", -1],
};
const JOG_AXES = ["vx_m_s", "vy_m_s", "vz_m_s", "vpitch_rad_s", "vroll_rad_s", "vgripper_m_s"];
const JOG_RAD_PER_M = 10; // pitch and roll jog at 10 rad/s per m/s of the speed slider
const JOG_GRIPPER_M_S = 0.02;
const GRIPPER_OPEN_M = 0.034; // zima.onboard.arm_poses.GRIPPER_MAX_OPENING_M
// Gamepad buttons (standard mapping) that jog while held: button -> [velocity, direction].
const PAD_JOG = {
  5: ["vz_m_s", 1], 4: ["vz_m_s", -1], 12: ["vpitch_rad_s", -1], 13: ["vpitch_rad_s", 1],
  14: ["vroll_rad_s", -1], 15: ["vroll_rad_s", 1], 6: ["vgripper_m_s", 1],
  7: ["vgripper_m_s", -1],
};

let ws = null;
let status = null;
let wasMoving = false;
let wasJogging = false;
const held = new Set();
const armHeld = new Set(); // ARM_KEYS codes held
const padButtons = [];

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.onopen = () => send({ t: "heartbeat" });
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.t === "status") show(message);
    else if (message.t === "refused") say(`${message.what} refused: ${message.message}`);
  };
  ws.onclose = () => {
    $("mode").textContent = "console disconnected";
    $("mode").className = "pill bad";
    setTimeout(reconnect, 1000);
  };
}

// The socket closed: the robot went away, or the session ended (expired, signed out
// elsewhere). A browser does not say why a socket was refused, so ask: 401 means sign in.
function reconnect() {
  fetch("/session", { cache: "no-store", credentials: "same-origin" }).then((response) => {
    if (response.status === 401) location.replace("/");
    else connect();
  }, () => setTimeout(reconnect, 1000));
}

function say(text) {
  $("message").textContent = text;
}

// ---- driving ---------------------------------------------------------------------------
function speeds() {
  return [parseFloat($("speed").value), parseFloat($("turn").value)];
}

function keyCommand() {
  const [speed, turn] = speeds();
  let v = 0, w = 0;
  if (held.has("forward")) v += speed;
  if (held.has("back")) v -= speed;
  if (held.has("left")) w += turn;
  if (held.has("right")) w -= turn;
  return [v, w];
}

function gamepad() {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  for (const pad of pads) if (pad && pad.connected) return pad;
  return null;
}

function padCommand(pad) {
  const [speed, turn] = speeds();
  const axis = (i) => (Math.abs(pad.axes[i] || 0) < DEADZONE ? 0 : pad.axes[i]);
  return [-axis(1) * speed, -axis(0) * turn]; // stick up: forward; stick left: turn left
}

function padButton(pad, index, action) {
  const pressed = Boolean(pad.buttons[index] && pad.buttons[index].pressed);
  if (pressed && !padButtons[index]) action();
  padButtons[index] = pressed;
}

// ---- the arm's jog ----------------------------------------------------------------------
function jogSpeeds() {
  const linear = parseFloat($("jog-speed").value);
  return { vx_m_s: linear, vy_m_s: linear, vz_m_s: linear, vpitch_rad_s: linear * JOG_RAD_PER_M,
    vroll_rad_s: linear * JOG_RAD_PER_M, vgripper_m_s: JOG_GRIPPER_M_S };
}

function jogCommand(pad) {
  const speed = jogSpeeds();
  const jog = { t: "jog" };
  for (const axis of JOG_AXES) jog[axis] = 0;
  const add = ([axis, sign], amount) => { jog[axis] += sign * amount * speed[axis]; };
  for (const code of armHeld) add(ARM_KEYS[code], 1);
  if (pad) {
    const axis = (i) => (Math.abs(pad.axes[i] || 0) < DEADZONE ? 0 : pad.axes[i]);
    jog.vx_m_s -= axis(3) * speed.vx_m_s; // right stick up: tool forward
    jog.vy_m_s -= axis(2) * speed.vy_m_s; // right stick left: tool left
    for (const [button, move] of Object.entries(PAD_JOG)) {
      const b = pad.buttons[button];
      if (b && b.pressed) add(move, 1);
    }
  }
  for (const axis of JOG_AXES) { // opposite keys cancel; keep within the speeds
    jog[axis] = Math.max(-speed[axis], Math.min(speed[axis], jog[axis]));
  }
  return jog;
}

function tick() {
  let [v, w] = keyCommand();
  const pad = gamepad();
  $("gamepad").textContent = pad ? `gamepad: ${pad.id.slice(0, 24)}` : "no gamepad";
  if (pad) {
    padButton(pad, 1, estop);
    padButton(pad, 9, () => send({ t: "handback" }));
    if (v === 0 && w === 0) [v, w] = padCommand(pad);
  }
  const moving = v !== 0 || w !== 0;
  if (moving || wasMoving) send({ t: "drive", v: v, w: w }); // one zero after release
  wasMoving = moving;
  $("command").textContent = moving ? `v ${v.toFixed(2)} m/s, w ${w.toFixed(2)} rad/s` : "stop";
  const jog = jogCommand(pad);
  const jogging = JOG_AXES.some((axis) => jog[axis] !== 0);
  if (jogging || wasJogging) send(jog); // one zero after release: the jog ends there
  wasJogging = jogging;
  $("jog").textContent = jogging ? JOG_AXES.filter((a) => jog[a] !== 0)
    .map((a) => `${a} ${jog[a].toFixed(3)}`).join(", ") : "stop";
}

function releaseAll() {
  held.clear();
  armHeld.clear();
  tick();
}

function typing(event) {
  const tag = event.target && event.target.tagName;
  return tag === "INPUT" && event.target.type !== "range";
}

window.addEventListener("keydown", (event) => {
  if (typing(event)) return;
  if (event.code === "Space") {
    event.preventDefault();
    estop();
    return;
  }
  if (event.code === "KeyH") send({ t: "handback" });
  const hold = holding(event.code);
  if (!hold) return;
  event.preventDefault();
  const [keys, key] = hold;
  if (!keys.has(key)) {
    keys.add(key);
    tick();
  }
});
window.addEventListener("keyup", (event) => {
  const hold = holding(event.code);
  if (!hold) return;
  event.preventDefault();
  const [keys, key] = hold;
  keys.delete(key);
  tick();
});
// Where a held key is kept: [the set, its entry there] (arm jog keys by code, drive keys
// by direction), or null for a key that moves nothing.
function holding(code) {
  if (ARM_KEYS[code]) return [armHeld, code];
  if (KEYS[code]) return [held, KEYS[code]];
  return null;
}
// A key released while the page had no focus never reaches it: stop on losing focus.
window.addEventListener("blur", releaseAll);
document.addEventListener("visibilitychange", () => { if (document.hidden) releaseAll(); });

function estop() {
  send({ t: "estop", engaged: true });
}

// ---- status ----------------------------------------------------------------------------
function pill(id, text, good) {
  $(id).textContent = text;
  $(id).className = "pill " + (good === null ? "" : good ? "good" : "bad");
}

function show(s) {
  status = s;
  pill("mode", s.mode + (s.takeover ? " (you took over)" : ""),
    s.mode !== "estop" && s.mode !== "low_battery");
  $("mode").title = s.mode_reason || "";  // also shown beside the tracks while stopped
  pill("lease", s.lease === "you" ? "you drive" :
    s.lease === "other" ? `watching (${s.lease_holder} drives)` : "lease free",
  s.lease !== "other");
  if (s.battery) {
    const b = s.battery;
    pill("battery", `battery ${(b.mv / 1000).toFixed(2)} V ${b.level}` +
      (b.latched ? " (latched)" : "") +
      (b.stale ? ` (stale: ${b.age_s.toFixed(1)} s old)` : "") +
      (b.advice ? ` - ${b.advice}` : ""),
    b.level === "ok" && !b.stale);
  } else pill("battery", "battery –", false);
  if (s.link) {
    pill("link", s.link.connected ? `link ${s.link.telemetry_hz.toFixed(0)} Hz` :
      `link down: ${s.link.reason}`, s.link.connected);
  }
  pill("loop", `loop ${s.loop.rate_hz.toFixed(0)} Hz, p99 ${s.loop.period_p99_ms.toFixed(1)} ms`,
    s.loop.overruns === 0);
  pill("model", s.model_sha256 ? `model ${s.model_sha256.slice(0, 12)}` : "no model",
    Boolean(s.model_sha256));
  pill("clients", `${s.clients} console${s.clients === 1 ? "" : "s"}`, null);
  $("estop").classList.toggle("hidden", s.mode === "estop");
  $("estop-release").classList.toggle("hidden", s.mode !== "estop");
  for (const button of document.querySelectorAll("#modes button")) {
    button.classList.toggle("active", button.dataset.mode === s.mode);
  }
  if (s.tracks) {
    $("tracks").textContent = `${s.tracks.left_mm_s} / ${s.tracks.right_mm_s} mm/s` +
      (s.tracks.reason ? ` (${s.tracks.reason})` : "");
  }
  if (s.velocity) {
    $("velocity").textContent = `${s.velocity.left_mm_s} / ${s.velocity.right_mm_s} mm/s` +
      (s.velocity.stale ? " (stale: the MCU is not heard)" : "");
  }
  showCameras(s.cameras);
  showRecorder(s.recorder);
  showArm(s.arm);
}

function showArm(a) {
  if (!a) {
    $("tool").textContent = "– (no ARM_STATE from the MCU yet)";
    return;
  }
  const [x, y, z] = a.tool_xyz_m;
  $("tool").textContent = `x ${x.toFixed(3)} y ${y.toFixed(3)} z ${z.toFixed(3)} m, ` +
    `pitch ${a.tool_pitch_rad.toFixed(2)} roll ${a.tool_roll_rad.toFixed(2)} rad, ` +
    `gripper ${(a.gripper_m * 1000).toFixed(0)} mm` + (a.stale ? " (stale)" : "");
}

function showCameras(names) {
  const box = $("cameras");
  for (const name of names) {
    if ($(`cam-${name}`)) continue;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.id = `cam-${name}`;
    img.alt = `${name} camera`;
    img.src = `/camera/${encodeURIComponent(name)}`;
    img.onerror = () => setTimeout(() => { img.src = `/camera/${name}?r=${Date.now()}`; }, 1000);
    const caption = document.createElement("figcaption");
    caption.textContent = name;
    figure.append(img, caption);
    box.append(figure);
  }
}

function showRecorder(r) {
  if (!r) {
    $("rec-state").textContent = "recorder not running";
    return;
  }
  $("rec-state").textContent = r.recording ? `recording ${r.episode}: ${r.steps} steps` :
    r.error ? `not recording (last error: ${r.error})` : "not recording";
  $("rec-state").className = r.recording ? "recording" : "";
  $("episodes").textContent = String(r.episodes_written);
  const counts = Object.entries(r.action_counts);
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  const box = $("actions");
  box.replaceChildren();
  for (const [name, n] of counts) {
    const share = total ? n / total : 0;
    const row = document.createElement("div");
    row.className = "bar";
    row.innerHTML = `<span class="name"></span><span class="fill"></span><span class="n"></span>`;
    row.children[0].textContent = name;
    row.children[1].style.width = `${(share * 100).toFixed(1)}%`;
    row.children[2].textContent = `${n} (${(share * 100).toFixed(0)}%)`;
    box.append(row);
  }
  const ns = counts.map(([, n]) => n);
  const most = Math.max(...ns), least = Math.min(...ns);
  $("balance").textContent = total > 0 && most > 3 * Math.max(least, 1) ?
    "unbalanced: record more of the rarest actions" : "";
}

// ---- controls --------------------------------------------------------------------------
function armTargets(joint, value) {
  const targets = JOINTS.map(() => null);
  targets[joint] = value;
  send({ t: "arm", targets: targets });
}

function buildArm() {
  const box = $("arm");
  JOINTS.forEach((name, joint) => {
    const label = document.createElement("label");
    label.className = "joint";
    label.textContent = name;
    const input = document.createElement("input");
    input.type = "range";
    input.min = "0";
    input.max = "1800";
    input.value = "900";
    input.id = `joint-${joint}`;
    let last = 0;
    input.addEventListener("input", () => { // at most 10 Hz while sliding
      const now = performance.now();
      if (now - last > 100) {
        last = now;
        armTargets(joint, parseInt(input.value, 10));
      }
    });
    input.addEventListener("change", () => armTargets(joint, parseInt(input.value, 10)));
    label.append(input);
    box.append(label);
  });
}

function wire() {
  $("estop").addEventListener("click", estop);
  $("estop-release").addEventListener("click", () => send({ t: "estop", engaged: false }));
  for (const button of document.querySelectorAll("#modes button")) {
    button.addEventListener("click", () => send({ t: "mode", mode: button.dataset.mode }));
  }
  $("lease-take").addEventListener("click", () => send({ t: "lease", take: true }));
  $("lease-release").addEventListener("click", () => send({ t: "lease", take: false }));
  $("handback").addEventListener("click", () => send({ t: "handback" }));
  $("rec-start").addEventListener("click", () => send({ t: "record", action: "start" }));
  $("rec-success").addEventListener("click",
    () => send({ t: "record", action: "stop", outcome: "success" }));
  $("rec-failure").addEventListener("click",
    () => send({ t: "record", action: "stop", outcome: "failure" }));
  $("rec-discard").addEventListener("click", () => send({ t: "record", action: "discard" }));
  $("grip-open").addEventListener("click", () => send({ t: "arm", gripper_m: GRIPPER_OPEN_M }));
  $("grip-close").addEventListener("click", () => send({ t: "arm", gripper_m: 0 }));
  for (const button of document.querySelectorAll("#poses button")) {
    button.addEventListener("click", () => send({ t: "arm", pose: button.dataset.pose }));
  }
  for (const id of ["speed", "turn", "jog-speed"]) {
    $(id).addEventListener("input", () => {
      $(`${id}-out`).textContent = parseFloat($(id).value).toFixed(2);
    });
  }
  // Buttons keep no focus, so Space and the arrows always reach the drive keys.
  for (const button of document.querySelectorAll("button")) {
    button.addEventListener("mouseup", () => button.blur());
  }
  buildArm();
  setInterval(tick, DRIVE_MS);
  setInterval(() => {
    if (wasMoving || (status && status.lease === "you")) send({ t: "hb" });
  }, HEARTBEAT_MS);
  setInterval(() => send({ t: "heartbeat" }), PRESENCE_MS); // while the page is open
  connect();
}

wire();
