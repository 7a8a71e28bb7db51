// raymap level-of-detail map: density raster + interactive points on a canvas.
// Hover shows a point's metadata, click sends trigger('click', {position}), a dragged box sends
// trigger('select', {index: [positions], value: [x0, x1, y0, y1]}) in data coordinates.
const M = { l: 12, r: 12, t: 12, b: 12 };
let view = null;  // {w, h, px(x), py(y), ix(px), iy(py)}
let selected = new Set();
let clicked = -1;
let raster = null;

function data() { return props.value && props.value.x ? props.value : null; }

function layout(canvas, d) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const [x0, x1] = d.xr, [y0, y1] = d.yr;
  const pw = w - M.l - M.r, ph = h - M.t - M.b;
  view = {
    w, h, pw, ph,
    px: (x) => M.l + (x - x0) / (x1 - x0) * pw,
    py: (y) => M.t + (1 - (y - y0) / (y1 - y0)) * ph,
    ix: (px) => x0 + (px - M.l) / pw * (x1 - x0),
    iy: (py) => y0 + (1 - (py - M.t) / ph) * (y1 - y0),
  };
  return ctx;
}

function draw(box) {
  const canvas = element.querySelector('canvas');
  const d = data();
  if (!canvas) return;
  const ctx0 = canvas.getContext('2d');
  if (!d) { ctx0.clearRect(0, 0, canvas.width, canvas.height); return; }
  const ctx = layout(canvas, d);
  ctx.clearRect(0, 0, view.w, view.h);
  if (raster && raster.complete) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(raster, M.l, M.t, view.pw, view.ph);
  }
  const n = d.x.length;
  const r = n > 3000 ? 2.2 : 3;
  ctx.globalAlpha = selected.size ? 0.35 : 0.9;
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = d.color[i];
    ctx.beginPath(); ctx.arc(view.px(d.x[i]), view.py(d.y[i]), r, 0, 6.2832); ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (selected.size) {
    for (let i = 0; i < n; i++) {
      if (!selected.has(d.pos[i])) continue;
      ctx.fillStyle = d.color[i]; ctx.strokeStyle = '#111'; ctx.lineWidth = 0.6;
      ctx.beginPath(); ctx.arc(view.px(d.x[i]), view.py(d.y[i]), r + 0.8, 0, 6.2832); ctx.fill(); ctx.stroke();
    }
  }
  const c = d.pos.indexOf(clicked);
  if (c >= 0) {
    ctx.strokeStyle = '#111'; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(view.px(d.x[c]), view.py(d.y[c]), r + 5, 0, 6.2832); ctx.stroke();
  }
  if (box) {
    ctx.fillStyle = 'rgba(20,184,166,0.12)'; ctx.strokeStyle = '#0f766e'; ctx.lineWidth = 1;
    ctx.fillRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
}

function legend() {
  const el = element.querySelector('.rm-legend');
  const d = data();
  if (!el) return;
  el.replaceChildren();
  for (const [name, color] of (d ? d.legend : [])) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = 'sw'; sw.style.background = color;
    item.append(sw, document.createTextNode(name));
    el.append(item);
  }
  if (d && d.caption) {
    const cap = document.createElement('span');
    cap.className = 'cap'; cap.textContent = d.caption;
    el.append(cap);
  }
}

function nearest(mx, my) {
  const d = data();
  if (!d || !view) return -1;
  let best = -1, bd = 64;  // within 8 px
  for (let i = 0; i < d.x.length; i++) {
    const dx = view.px(d.x[i]) - mx, dy = view.py(d.y[i]) - my;
    const dd = dx * dx + dy * dy;
    if (dd < bd) { bd = dd; best = i; }
  }
  return best;
}

function refresh() {
  selected = new Set(); clicked = -1;
  const d = data();
  raster = null;
  if (d && d.density) {
    raster = new Image();
    raster.onload = () => draw();
    raster.src = d.density;
  }
  legend(); draw();
}

function wire() {
  const canvas = element.querySelector('canvas');
  const tip = element.querySelector('.rm-tip');
  if (!canvas || canvas.dataset.wired) return;
  canvas.dataset.wired = '1';
  let start = null;
  const at = (e) => { const b = canvas.getBoundingClientRect(); return [e.clientX - b.left, e.clientY - b.top]; };
  canvas.addEventListener('mousedown', (e) => { start = at(e); });
  canvas.addEventListener('mousemove', (e) => {
    const [mx, my] = at(e);
    if (start && (Math.abs(mx - start[0]) > 4 || Math.abs(my - start[1]) > 4)) {
      tip.style.display = 'none';
      draw([Math.min(start[0], mx), Math.min(start[1], my), Math.max(start[0], mx), Math.max(start[1], my)]);
      return;
    }
    const i = nearest(mx, my);
    const d = data();
    if (i < 0 || !d) { tip.style.display = 'none'; return; }
    tip.textContent = d.tip[i];
    tip.style.display = 'block';
    tip.style.left = Math.min(mx + 14, canvas.clientWidth - 240) + 'px';
    tip.style.top = (my + 14) + 'px';
  });
  canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  canvas.addEventListener('mouseup', (e) => {
    if (!start) return;
    const [mx, my] = at(e);
    const s = start; start = null;
    const d = data();
    if (!d || !view) return;
    if (Math.abs(mx - s[0]) <= 4 && Math.abs(my - s[1]) <= 4) {
      const i = nearest(mx, my);
      if (i >= 0) { clicked = d.pos[i]; draw(); trigger('click', { position: d.pos[i] }); }
      return;
    }
    const [ax, bx] = [Math.min(s[0], mx), Math.max(s[0], mx)], [ay, by] = [Math.min(s[1], my), Math.max(s[1], my)];
    const picked = [];
    for (let i = 0; i < d.x.length; i++) {
      const px = view.px(d.x[i]), py = view.py(d.y[i]);
      if (px >= ax && px <= bx && py >= ay && py <= by) picked.push(d.pos[i]);
    }
    selected = new Set(picked); draw();
    trigger('select', { index: picked, value: [view.ix(ax), view.ix(bx), view.iy(by), view.iy(ay)] });
  });
  new ResizeObserver(() => draw()).observe(canvas);
}

wire();
refresh();
watch('value', () => { wire(); refresh(); });
