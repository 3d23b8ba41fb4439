/* The labeling editor: one canvas, boxes in image pixels, every action on the keyboard too.
 *
 * Rendering: the image is drawn once per view change into a cached canvas the size of the
 * screen; boxes are drawn on top. Mouse moves only change state and ask for one frame
 * (requestAnimationFrame): the page (side panel, DOM) is not re-rendered while dragging.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("labeling-config").textContent);
  const COLOURS = ["#f5c518", "#ff7a00", "#e0245e", "#17bf63", "#1da1f2", "#794bc4", "#00c2c7", "#8899a6"];
  const HANDLE = 6; // screen px: handle half-size and hit tolerance
  const MIN_BOX = 2; // screen px: a smaller drag is a click, not a box
  const HISTORY_LIMIT = 200;

  const stage = document.querySelector("[data-testid=stage]");
  const canvas = document.querySelector("[data-testid=canvas]");
  const ctx = canvas.getContext("2d");
  const imageLayer = document.createElement("canvas");
  const imageCtx = imageLayer.getContext("2d");
  const $ = (selector) => document.querySelector(selector);
  const messageEl = $("[data-testid=message]");
  const boxList = $("[data-testid=box-list]");
  const classList = $("[data-testid=class-list]");
  const slider = $("[data-testid=score-slider]");
  const sliderValue = $("[data-testid=score-value]");
  const help = $("[data-testid=help]");
  const skipDialog = $("[data-testid=skip-dialog]");
  const skipReason = $("[data-testid=skip-reason]");

  const stats = (window.__labelingStats = { frames: [], openMs: [], renders: 0 });

  let queue = []; // payloads claimed for me, queue[0] is on screen
  const seen = new Set(); // ids already saved or skipped in this session
  const images = new Map(); // id -> {img, ready: Promise}
  let sample = null;
  let image = null;
  let boxes = []; // {cls, x1, y1, x2, y2, pre, score}
  let selected = -1;
  let currentClass = config.classes[0] || "";
  let hidden = false;
  let minScore = 0;
  let drawMode = false;
  let panMode = false;
  let spaceDown = false;
  let view = { scale: 1, ox: 0, oy: 0 };
  let viewDirty = true;
  let drag = null; // {kind: draw|move|resize|pan, ...}
  let frameRequested = false;
  let undoStack = [];
  let loadedBoxes = "[]"; // the shown sample's boxes as loaded: anything else is unsaved work
  let redoStack = [];
  let busy = false;
  let openStarted = 0;
  let refilling = null;

  // --- Utilities ------------------------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : config.csrf;
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = { detail: `The server answered ${response.status} without a reason.` };
    }
    return { ok: response.ok, status: response.status, data };
  }

  function sampleUrl(template, id) {
    return template.replace("/0/", `/${id}/`);
  }

  function say(text, kind) {
    messageEl.textContent = text;
    messageEl.className = `message ${kind || ""}`;
  }

  function colourOf(name) {
    const index = config.classes.indexOf(name);
    return COLOURS[index >= 0 ? index % 8 : 7];
  }

  function snapshot() {
    return JSON.stringify(boxes);
  }

  function remember() {
    undoStack.push(snapshot());
    if (undoStack.length > HISTORY_LIMIT) undoStack.shift();
    redoStack = [];
  }

  function visible(box) {
    return !hidden && (!box.pre || box.score >= minScore);
  }

  function clampBox(box) {
    const w = sample.width;
    const h = sample.height;
    let x1 = Math.min(box.x1, box.x2);
    let x2 = Math.max(box.x1, box.x2);
    let y1 = Math.min(box.y1, box.y2);
    let y2 = Math.max(box.y1, box.y2);
    x1 = Math.max(0, Math.min(w, x1));
    x2 = Math.max(0, Math.min(w, x2));
    y1 = Math.max(0, Math.min(h, y1));
    y2 = Math.max(0, Math.min(h, y2));
    Object.assign(box, { x1, y1, x2, y2 });
    return box;
  }

  // --- View -----------------------------------------------------------------------------------

  function resizeCanvas() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(stage.clientWidth * ratio));
    const height = Math.max(1, Math.round(stage.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = imageLayer.width = width;
      canvas.height = imageLayer.height = height;
      viewDirty = true;
    }
  }

  function fit() {
    if (!sample) return;
    resizeCanvas();
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.width / ratio;
    const height = canvas.height / ratio;
    const scale = Math.min(width / sample.width, height / sample.height) * 0.98;
    view = { scale, ox: (width - sample.width * scale) / 2, oy: (height - sample.height * scale) / 2 };
    viewDirty = true;
    requestFrame();
  }

  function zoomAt(factor, sx, sy) {
    const scale = Math.max(0.02, Math.min(40, view.scale * factor));
    const ix = (sx - view.ox) / view.scale;
    const iy = (sy - view.oy) / view.scale;
    view = { scale, ox: sx - ix * scale, oy: sy - iy * scale };
    viewDirty = true;
    requestFrame();
  }

  function toImage(sx, sy) {
    return { x: (sx - view.ox) / view.scale, y: (sy - view.oy) / view.scale };
  }

  function toScreen(box) {
    return {
      x1: box.x1 * view.scale + view.ox,
      y1: box.y1 * view.scale + view.oy,
      x2: box.x2 * view.scale + view.ox,
      y2: box.y2 * view.scale + view.oy,
    };
  }

  // --- Rendering ------------------------------------------------------------------------------

  function requestFrame() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  function render(now) {
    frameRequested = false;
    const started = performance.now();
    resizeCanvas();
    const ratio = window.devicePixelRatio || 1;
    if (viewDirty) {
      imageCtx.setTransform(1, 0, 0, 1, 0, 0);
      imageCtx.fillStyle = "#1d2430";
      imageCtx.fillRect(0, 0, imageLayer.width, imageLayer.height);
      if (image && image.complete && image.naturalWidth) {
        imageCtx.setTransform(ratio, 0, 0, ratio, 0, 0);
        imageCtx.imageSmoothingEnabled = view.scale < 2;
        imageCtx.drawImage(image, view.ox, view.oy, sample.width * view.scale, sample.height * view.scale);
        viewDirty = false;
      }
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(imageLayer, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    for (let index = 0; index < boxes.length; index++) {
      const box = boxes[index];
      if (!visible(box)) continue;
      const s = toScreen(box);
      const colour = colourOf(box.cls);
      ctx.lineWidth = index === selected ? 3 : 2;
      ctx.strokeStyle = colour;
      ctx.setLineDash(box.pre ? [6, 4] : []);
      ctx.strokeRect(s.x1, s.y1, s.x2 - s.x1, s.y2 - s.y1);
      if (box.pre || index === selected || boxes.length <= 60) {
        const label = box.pre ? `${box.cls} ${box.score.toFixed(2)}` : box.cls;
        const textWidth = ctx.measureText(label).width + 6;
        ctx.setLineDash([]);
        ctx.fillStyle = box.pre ? "rgba(16,24,40,.75)" : colour;
        ctx.fillRect(s.x1, s.y1 - 15, textWidth, 15);
        ctx.fillStyle = box.pre ? "#fff" : "#101828";
        ctx.fillText(label, s.x1 + 3, s.y1 - 2);
      }
    }
    ctx.setLineDash([]);
    if (selected >= 0 && boxes[selected] && visible(boxes[selected])) {
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = "#101828";
      ctx.lineWidth = 1;
      for (const point of handles(toScreen(boxes[selected]))) {
        ctx.fillRect(point.x - HANDLE / 2 - 1, point.y - HANDLE / 2 - 1, HANDLE + 2, HANDLE + 2);
        ctx.strokeRect(point.x - HANDLE / 2 - 1, point.y - HANDLE / 2 - 1, HANDLE + 2, HANDLE + 2);
      }
    }
    stats.renders += 1;
    if (drag && drag.kind !== "pan") stats.frames.push(performance.now() - started);
    if (openStarted && image && image.complete && image.naturalWidth && !viewDirty) {
      stats.openMs.push(performance.now() - openStarted);
      openStarted = 0;
      stage.dataset.ready = String(sample.id);
    }
  }

  function handles(s) {
    const mx = (s.x1 + s.x2) / 2;
    const my = (s.y1 + s.y2) / 2;
    return [
      { name: "nw", x: s.x1, y: s.y1 },
      { name: "n", x: mx, y: s.y1 },
      { name: "ne", x: s.x2, y: s.y1 },
      { name: "e", x: s.x2, y: my },
      { name: "se", x: s.x2, y: s.y2 },
      { name: "s", x: mx, y: s.y2 },
      { name: "sw", x: s.x1, y: s.y2 },
      { name: "w", x: s.x1, y: my },
    ];
  }

  // --- Side panel (updated on changes, never per mouse move) ------------------------------------

  function updatePanel() {
    const rows = [];
    boxes.forEach((box, index) => {
      const item = document.createElement("li");
      item.dataset.index = index;
      item.className = (index === selected ? "selected " : "") + (box.pre ? "pre" : "");
      item.textContent = `${box.pre ? "◌ " : ""}${box.cls}${box.pre ? ` ${box.score.toFixed(2)}` : ""} · ${Math.round(box.x2 - box.x1)}×${Math.round(box.y2 - box.y1)}`;
      if (!visible(box)) item.style.opacity = "0.4";
      rows.push(item);
    });
    boxList.replaceChildren(...rows);
    const accepted = boxes.filter((box) => !box.pre).length;
    $("[data-testid=box-count]").textContent = `${accepted} box(es), ${boxes.length - accepted} pre-annotation(s)`;
    for (const button of classList.querySelectorAll("button")) {
      const name = button.dataset.cls;
      const active = selected >= 0 && boxes[selected] ? boxes[selected].cls === name : currentClass === name;
      button.classList.toggle("active", active);
    }
    $("[data-testid=mode]").textContent = panMode ? "pan (h)" : drawMode ? "draw (r)" : "select";
    $("[data-testid=hidden-state]").textContent = hidden ? "boxes hidden (alt+h)" : "";
  }

  function changed() {
    updatePanel();
    requestFrame();
  }

  // --- Queue, prefetch, show ----------------------------------------------------------------

  function preload(payload) {
    if (images.has(payload.id)) return images.get(payload.id);
    const img = new Image();
    img.decoding = "async";
    const entry = {
      img,
      ready: new Promise((resolve) => {
        img.onload = () => (img.decode ? img.decode().catch(() => null) : Promise.resolve()).then(resolve);
        img.onerror = resolve;
      }),
    };
    img.src = payload.image_url;
    images.set(payload.id, entry);
    return entry;
  }

  function prefetchNext() {
    for (const payload of queue.slice(0, 3)) preload(payload);
    for (const id of images.keys()) {
      if (!queue.some((payload) => payload.id === id)) images.delete(id);
    }
  }

  async function refill(extra) {
    if (refilling && !extra) return refilling;
    const body = { size: 3, filters: config.filters, ...(extra || {}) };
    refilling = postJson(config.claimUrl, body).then(({ ok, data }) => {
      refilling = null;
      if (!ok) {
        say(data.detail || "Could not get images from the queue.", "error");
        return;
      }
      for (const payload of data.samples) {
        if (seen.has(payload.id) || queue.some((item) => item.id === payload.id)) continue;
        if (extra && extra.sample && payload.id === Number(extra.sample)) queue.unshift(payload);
        else queue.push(payload);
      }
      showCounters(data.counters, data.review);
      if (data.warning) say(data.warning, "error");
      prefetchNext();
    });
    return refilling;
  }

  function showCounters(counters, review) {
    if (!counters) return;
    $("[data-testid=count-waiting]").textContent = counters.waiting;
    $("[data-testid=count-today]").textContent = counters.labeled_today;
    $("[data-testid=count-mine]").textContent = counters.labeled_by_me_today;
    $("[data-testid=review-note]").hidden = !review;
  }

  function show(payload) {
    sample = payload;
    openStarted = performance.now();
    stage.dataset.ready = "";
    selected = -1;
    undoStack = [];
    redoStack = [];
    drawMode = false;
    drag = null;
    if (!payload) {
      image = null;
      boxes = [];
      stage.dataset.sample = "";
      $("[data-testid=empty]").hidden = false;
      $("[data-testid=sample-title]").textContent = "";
      changed();
      return;
    }
    $("[data-testid=empty]").hidden = true;
    stage.dataset.sample = String(payload.id);
    const title = $("[data-testid=sample-title]");
    title.textContent = `#${payload.id} ${payload.name || ""}`;
    title.href = payload.page_url;
    $("[data-testid=sample-facts]").textContent =
      `${payload.width}×${payload.height}` +
      (payload.hardness !== null ? ` · hardness ${payload.hardness.toFixed(3)}` : "") +
      (payload.mined_by ? ` · ${payload.mined_by}` : "") +
      (payload.base_revision ? ` · editing revision ${payload.base_revision}` : "");
    const rejected = $("[data-testid=rejected-comment]");
    rejected.hidden = !payload.rejected_comment;
    rejected.textContent = payload.rejected_comment ? `Returned by the reviewer: ${payload.rejected_comment}` : "";
    boxes = payload.boxes.map((box) => ({ cls: box.class_name, x1: box.x1, y1: box.y1, x2: box.x2, y2: box.y2, pre: false, score: 1 }));
    if (!payload.base_revision) {
      // Only a sample nobody has labeled starts from the model's boxes: a saved "no objects"
      // is a label too.
      for (const box of payload.prediction) {
        boxes.push({ cls: box.class_name, x1: box.x1, y1: box.y1, x2: box.x2, y2: box.y2, pre: true, score: box.score });
      }
    }
    loadedBoxes = snapshot();
    const entry = preload(payload);
    image = entry.img;
    fit();
    entry.ready.then(() => {
      if (sample === payload) {
        viewDirty = true;
        requestFrame();
      }
    });
    changed();
  }

  function advance() {
    if (sample) seen.add(sample.id);
    queue = queue.filter((payload) => !seen.has(payload.id));
    show(queue[0] || null);
    prefetchNext();
    refill().then(() => {
      if (!sample && queue.length) show(queue[0]);
      prefetchNext();
    });
  }

  // --- Saving -------------------------------------------------------------------------------

  async function submit(noObjects) {
    if (!sample || busy) return;
    const kept = boxes.filter((box) => !box.pre);
    if (noObjects && kept.length) {
      say(`There are ${kept.length} box(es): delete them first, or submit them with ctrl+enter.`, "error");
      return;
    }
    const payload = sample;
    const body = {
      base_revision: payload.base_revision,
      boxes: kept.map((box) => clampBox({ ...box })).map((box) => ({
        class_name: box.cls,
        x1: box.x1,
        y1: box.y1,
        x2: box.x2,
        y2: box.y2,
      })),
    };
    busy = true;
    say("Saving…");
    const { ok, status, data } = await postJson(sampleUrl(config.saveUrl, payload.id), body);
    busy = false;
    if (!ok) {
      say(`Not saved (${status}): ${data.detail || JSON.stringify(data)}`, "error");
      if (data.code === "claimed_by_other" && sample === payload) advance(); // it is theirs now
      return;
    }
    const note = data.held_for_review ? " (waits for review)" : "";
    say(`Saved #${payload.id} as revision ${data.revision}${note}.`, "ok");
    document.body.dataset.lastSaved = `${payload.id}:${data.revision}`;
    if (sample === payload) advance();
  }

  function openSkip() {
    if (!sample) return;
    skipDialog.hidden = false;
    skipReason.focus();
  }

  async function confirmSkip() {
    const payload = sample;
    skipDialog.hidden = true;
    if (!payload) return;
    const { ok, data } = await postJson(sampleUrl(config.skipUrl, payload.id), {
      base_revision: payload.base_revision,
      reason: skipReason.value,
      note: $("[data-testid=skip-note]").value,
    });
    if (!ok) {
      say(data.detail || "Could not skip.", "error");
      if (data.code === "claimed_by_other" && sample === payload) advance();
      return;
    }
    say(`Skipped #${payload.id}.`, "ok");
    if (sample === payload) advance();
  }

  // --- Editing actions ----------------------------------------------------------------------

  function setClass(name) {
    if (!config.classes.includes(name)) return;
    currentClass = name;
    if (selected >= 0 && boxes[selected]) {
      remember();
      boxes[selected].cls = name;
      boxes[selected].pre = false;
    }
    changed();
  }

  function accept(index) {
    if (index < 0 || !boxes[index] || !boxes[index].pre) return;
    remember();
    boxes[index].pre = false;
    if (!config.classes.includes(boxes[index].cls)) say(`"${boxes[index].cls}" is not a class of this dataset: choose one (1–9).`, "error");
    changed();
  }

  function acceptAll() {
    const waiting = boxes.filter((box) => box.pre && visible(box));
    if (!waiting.length) return;
    remember();
    for (const box of waiting) box.pre = false;
    changed();
  }

  function removeSelected() {
    if (selected < 0) return;
    remember();
    boxes.splice(selected, 1);
    selected = Math.min(selected, boxes.length - 1);
    changed();
  }

  function duplicateSelected() {
    if (selected < 0) return;
    remember();
    const copy = { ...boxes[selected], pre: false };
    const shift = Math.max(4, 10 / view.scale);
    copy.x1 += shift;
    copy.x2 += shift;
    copy.y1 += shift;
    copy.y2 += shift;
    boxes.push(clampBox(copy));
    selected = boxes.length - 1;
    changed();
  }

  function newBoxAtCentre() {
    if (!sample) return;
    remember();
    const w = sample.width / 5;
    const h = sample.height / 5;
    boxes.push({ cls: currentClass, x1: sample.width / 2 - w / 2, y1: sample.height / 2 - h / 2, x2: sample.width / 2 + w / 2, y2: sample.height / 2 + h / 2, pre: false, score: 1 });
    selected = boxes.length - 1;
    changed();
  }

  function nudge(dx, dy, resize) {
    if (selected < 0 || !boxes[selected]) return;
    remember();
    const box = boxes[selected];
    box.pre = false; // adjusting a pre-annotation accepts it
    if (resize) {
      box.x2 = Math.max(box.x1 + 1, box.x2 + dx);
      box.y2 = Math.max(box.y1 + 1, box.y2 + dy);
    } else {
      const w = box.x2 - box.x1;
      const h = box.y2 - box.y1;
      box.x1 = Math.max(0, Math.min(sample.width - w, box.x1 + dx));
      box.y1 = Math.max(0, Math.min(sample.height - h, box.y1 + dy));
      box.x2 = box.x1 + w;
      box.y2 = box.y1 + h;
    }
    clampBox(box);
    changed();
  }

  function cycle(step) {
    const order = boxes.map((box, index) => index).filter((index) => visible(boxes[index]));
    if (!order.length) return;
    const at = order.indexOf(selected);
    selected = order[(at + step + order.length) % order.length];
    changed();
  }

  function undo() {
    if (!undoStack.length) return;
    redoStack.push(snapshot());
    boxes = JSON.parse(undoStack.pop());
    selected = Math.min(selected, boxes.length - 1);
    changed();
  }

  function redo() {
    if (!redoStack.length) return;
    undoStack.push(snapshot());
    boxes = JSON.parse(redoStack.pop());
    selected = Math.min(selected, boxes.length - 1);
    changed();
  }

  function setMinScore(value) {
    minScore = Math.max(0, Math.min(1, Math.round(value * 100) / 100));
    slider.value = String(minScore);
    sliderValue.textContent = minScore.toFixed(2);
    if (selected >= 0 && boxes[selected] && !visible(boxes[selected])) selected = -1;
    changed();
  }

  // --- Mouse --------------------------------------------------------------------------------

  function pointer(event) {
    const rect = canvas.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  function hitHandle(point) {
    if (selected < 0 || !boxes[selected] || !visible(boxes[selected])) return null;
    for (const handle of handles(toScreen(boxes[selected]))) {
      if (Math.abs(handle.x - point.x) <= HANDLE + 1 && Math.abs(handle.y - point.y) <= HANDLE + 1) return handle.name;
    }
    return null;
  }

  function hitBox(point) {
    let best = -1;
    let bestArea = Infinity;
    for (let index = boxes.length - 1; index >= 0; index--) {
      if (!visible(boxes[index])) continue;
      const s = toScreen(boxes[index]);
      if (point.x >= s.x1 - 2 && point.x <= s.x2 + 2 && point.y >= s.y1 - 2 && point.y <= s.y2 + 2) {
        const area = (s.x2 - s.x1) * (s.y2 - s.y1);
        if (area < bestArea) {
          best = index;
          bestArea = area;
        }
      }
    }
    return best;
  }

  canvas.addEventListener("mousedown", (event) => {
    if (!sample || event.button !== 0) return;
    stage.focus();
    const point = pointer(event);
    if (panMode || spaceDown) {
      drag = { kind: "pan", start: point, origin: { ...view } };
      return;
    }
    const handle = hitHandle(point);
    if (handle) {
      remember();
      drag = { kind: "resize", handle, index: selected };
      return;
    }
    const index = drawMode ? -1 : hitBox(point);
    if (index >= 0) {
      selected = index;
      remember();
      const at = toImage(point.x, point.y);
      const box = boxes[index];
      drag = { kind: "move", index, dx: at.x - box.x1, dy: at.y - box.y1, moved: false };
      updatePanel();
      requestFrame();
      return;
    }
    const at = toImage(point.x, point.y);
    drag = { kind: "draw", start: point, box: { cls: currentClass, x1: at.x, y1: at.y, x2: at.x, y2: at.y, pre: false, score: 1 } };
  });

  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const point = pointer(event);
    const at = toImage(point.x, point.y);
    if (drag.kind === "pan") {
      view = { ...drag.origin, ox: drag.origin.ox + point.x - drag.start.x, oy: drag.origin.oy + point.y - drag.start.y };
      viewDirty = true;
    } else if (drag.kind === "draw") {
      drag.box.x2 = at.x;
      drag.box.y2 = at.y;
      if (!drag.added && (Math.abs(point.x - drag.start.x) >= MIN_BOX || Math.abs(point.y - drag.start.y) >= MIN_BOX)) {
        remember();
        boxes.push(drag.box);
        selected = boxes.length - 1;
        drag.added = true;
      }
    } else if (drag.kind === "move") {
      const box = boxes[drag.index];
      const w = box.x2 - box.x1;
      const h = box.y2 - box.y1;
      box.x1 = Math.max(0, Math.min(sample.width - w, at.x - drag.dx));
      box.y1 = Math.max(0, Math.min(sample.height - h, at.y - drag.dy));
      box.x2 = box.x1 + w;
      box.y2 = box.y1 + h;
      drag.moved = true;
    } else if (drag.kind === "resize") {
      const box = boxes[drag.index];
      const x = Math.max(0, Math.min(sample.width, at.x));
      const y = Math.max(0, Math.min(sample.height, at.y));
      if (drag.handle.includes("w")) box.x1 = x;
      if (drag.handle.includes("e")) box.x2 = x;
      if (drag.handle.includes("n")) box.y1 = y;
      if (drag.handle.includes("s")) box.y2 = y;
    }
    requestFrame();
  });

  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const finished = drag;
    drag = null;
    if (finished.kind === "draw") {
      if (finished.added) {
        clampBox(finished.box);
        if (finished.box.x2 - finished.box.x1 < 1 || finished.box.y2 - finished.box.y1 < 1) {
          boxes.pop();
          undoStack.pop();
          selected = -1;
        }
        drawMode = false;
      } else {
        selected = -1;
      }
    } else if (finished.kind === "resize") {
      const box = boxes[finished.index];
      clampBox(box);
      if (box.x2 - box.x1 < 1 || box.y2 - box.y1 < 1) {
        boxes = JSON.parse(undoStack.pop());
        say("A box needs a width and a height: the resize was undone.", "error");
      }
      box.pre = false;
    } else if (finished.kind === "move") {
      if (!finished.moved) undoStack.pop();
      else boxes[finished.index].pre = false;
    }
    changed();
  });

  canvas.addEventListener(
    "wheel",
    (event) => {
      if (!sample) return;
      event.preventDefault();
      const point = pointer(event);
      zoomAt(event.deltaY < 0 ? 1.15 : 1 / 1.15, point.x, point.y);
    },
    { passive: false },
  );

  boxList.addEventListener("click", (event) => {
    const item = event.target.closest("li");
    if (!item) return;
    selected = Number(item.dataset.index);
    changed();
  });

  classList.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) setClass(button.dataset.cls);
  });

  slider.addEventListener("input", () => setMinScore(Number(slider.value)));

  // --- Keyboard -----------------------------------------------------------------------------

  function inField(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
  }

  document.addEventListener("keydown", (event) => {
    const key = event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    if (!skipDialog.hidden) {
      if (key === "Escape") {
        skipDialog.hidden = true;
        stage.focus();
      } else if (key === "Enter") {
        event.preventDefault();
        confirmSkip().then(() => stage.focus());
      } else if (/^[1-9]$/.test(key) && event.target.tagName !== "INPUT") {
        const option = skipReason.options[Number(key) - 1];
        if (option) skipReason.value = option.value;
        event.preventDefault();
      }
      return;
    }
    if (!help.hidden) {
      if (key === "Escape" || key === "?") {
        help.hidden = true;
        event.preventDefault();
      }
      return;
    }
    if (inField(event.target) && event.target !== slider) return;
    let handled = true;
    if (ctrl && key === "Enter") submit(false);
    else if (ctrl && (key === "z" || key === "Z") && event.shiftKey) redo();
    else if (ctrl && (key === "z" || key === "Z")) undo();
    else if (ctrl && (key === "y" || key === "Y")) redo();
    else if (ctrl && (key === "d" || key === "D")) duplicateSelected();
    else if (ctrl && (key === "=" || key === "+")) zoomAt(1.25, stage.clientWidth / 2, stage.clientHeight / 2);
    else if (ctrl && key === "-") zoomAt(0.8, stage.clientWidth / 2, stage.clientHeight / 2);
    else if (ctrl && key === "0") fit();
    else if (ctrl) handled = false;
    else if (event.altKey && (key === "h" || key === "H" || event.code === "KeyH")) {
      hidden = !hidden;
      if (hidden) selected = -1;
      changed();
    } else if (event.altKey && key.startsWith("Arrow")) {
      const step = event.shiftKey ? 10 : 1;
      nudge(key === "ArrowRight" ? step : key === "ArrowLeft" ? -step : 0, key === "ArrowDown" ? step : key === "ArrowUp" ? -step : 0, true);
    } else if (key.startsWith("Arrow")) {
      const step = event.shiftKey ? 10 : 1;
      nudge(key === "ArrowRight" ? step : key === "ArrowLeft" ? -step : 0, key === "ArrowDown" ? step : key === "ArrowUp" ? -step : 0, false);
    } else if (/^[1-9]$/.test(key)) setClass(config.classes[Number(key) - 1]);
    else if (key === "0") submit(true);
    else if (key === "Tab") cycle(event.shiftKey ? -1 : 1);
    else if (key === "Delete" || key === "Backspace") removeSelected();
    else if (key === "r" || key === "R") {
      drawMode = !drawMode;
      panMode = false;
      changed();
    } else if (key === "h" || key === "H") {
      panMode = !panMode;
      drawMode = false;
      changed();
    } else if (key === " ") spaceDown = true;
    else if (key === "n" || key === "N") newBoxAtCentre();
    else if (key === "a" && !event.shiftKey) accept(selected);
    else if (key === "A" || (key === "a" && event.shiftKey)) acceptAll();
    else if (key === "f" || key === "F") fit();
    else if (key === "s" || key === "S") openSkip();
    else if (key === "[") setMinScore(minScore - 0.05);
    else if (key === "]") setMinScore(minScore + 0.05);
    else if (key === "?") help.hidden = false;
    else if (key === "Escape") {
      selected = -1;
      drawMode = false;
      panMode = false;
      changed();
    } else handled = false;
    if (handled) event.preventDefault();
  });

  document.addEventListener("keyup", (event) => {
    if (event.key === " ") spaceDown = false;
  });

  $("[data-testid=submit]").addEventListener("click", () => submit(false));
  $("[data-testid=no-objects]").addEventListener("click", () => submit(true));
  $("[data-testid=skip]").addEventListener("click", openSkip);
  $("[data-testid=skip-confirm]").addEventListener("click", confirmSkip);
  $("[data-testid=skip-cancel]").addEventListener("click", () => (skipDialog.hidden = true));
  $("[data-testid=help-button]").addEventListener("click", () => (help.hidden = false));
  $("[data-testid=help-close]").addEventListener("click", () => (help.hidden = true));
  // Leaving the page gives back the claimed images not saved, so others get them at once
  // (otherwise they return when the claims expire).
  window.addEventListener("pagehide", () => {
    const ids = queue.map((payload) => payload.id).filter((id) => !seen.has(id));
    if (!ids.length || !navigator.sendBeacon) return;
    const form = new FormData();
    form.append("csrfmiddlewaretoken", csrfToken());
    form.append("samples", ids.join(","));
    navigator.sendBeacon(config.leaveUrl, form);
  });
  // Unsaved boxes are not lost without a question (the browser asks; its wording is its own).
  window.addEventListener("beforeunload", (event) => {
    if (sample && snapshot() !== loadedBoxes) event.preventDefault();
  });
  window.addEventListener("resize", () => {
    viewDirty = true;
    requestFrame();
  });

  // For tests and benchmarks: read-only views of the state.
  window.labelingEditor = {
    state: () => ({ sample: sample && sample.id, boxes: JSON.parse(snapshot()), selected, queue: queue.map((p) => p.id), view: { ...view } }),
    toScreen: (x, y) => {
      const rect = canvas.getBoundingClientRect();
      return { x: rect.left + x * view.scale + view.ox, y: rect.top + y * view.scale + view.oy };
    },
  };

  // --- Start --------------------------------------------------------------------------------

  const classButtons = config.classes.map((name, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.cls = name;
    button.innerHTML = `<kbd>${index < 9 ? index + 1 : ""}</kbd>`;
    button.append(document.createTextNode(name));
    button.style.borderLeft = `6px solid ${colourOf(name)}`;
    return button;
  });
  classList.replaceChildren(...classButtons);
  for (const [value, label] of config.skipReasons) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    skipReason.append(option);
  }
  stage.focus();
  refill(config.sample ? { sample: config.sample } : null).then(() => show(queue[0] || null));
})();
