// coursetrail console: small SVG charts (no library). Every chart is an <svg role="img"> with an
// aria-label; the numbers it draws are also rendered as text by the caller (console.js).
// Only presentation attributes and classes are used (the Content-Security-Policy forbids inline
// styles); colours live in console.css.

const NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element: s('rect', {x: 1, class: 'bar'}, child, 'text'). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const round = (v, digits = 1) => {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
};

/** A duration in seconds as text: "850 ms", "42 s", "12 min 5 s", "3 h 12 min", "2 d 4 h". */
export function fmtDuration(seconds) {
  if (seconds == null || Number.isNaN(Number(seconds))) return '—';
  const v = Number(seconds);
  if (v < 0) return `-${fmtDuration(-v)}`;
  if (v === 0) return '0 s';
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  if (v < 60) return `${round(v, v < 10 ? 1 : 0)} s`;
  const total = Math.round(v);
  if (total < 3600) {
    const m = Math.floor(total / 60);
    const sec = total % 60;
    return sec ? `${m} min ${sec} s` : `${m} min`;
  }
  if (total < 86400) {
    const hours = Math.floor(total / 3600);
    const m = Math.round((total % 3600) / 60);
    if (m === 60) return `${hours + 1} h`;
    return m ? `${hours} h ${m} min` : `${hours} h`;
  }
  const d = Math.floor(total / 86400);
  const hours = Math.round((total % 86400) / 3600);
  if (hours === 24) return `${d + 1} d`;
  return hours ? `${d} d ${hours} h` : `${d} d`;
}

/** A short tick label for a duration. */
function tickLabel(seconds) {
  if (seconds === 0) return '0';
  if (seconds < 60) return `${round(seconds, 1)} s`;
  if (seconds < 3600) return `${round(seconds / 60, 1)} min`;
  if (seconds < 86400) return `${round(seconds / 3600, 1)} h`;
  return `${round(seconds / 86400, 1)} d`;
}

const DURATION_STEPS = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
  900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 432000, 604800, 1209600, 2592000,
  7776000, 15552000, 31536000,
];

/** Ticks for a duration axis from 0 to at least `max`: {max, ticks}. */
export function durationScale(max, target = 6) {
  const top = max > 0 ? max : 1;
  const step =
    DURATION_STEPS.find((candidate) => top / candidate <= target) ??
    Math.ceil(top / target / 31536000) * 31536000;
  const niceMax = Math.ceil(top / step - 1e-9) * step;
  const ticks = [];
  for (let i = 0; i * step <= niceMax + step * 1e-9; i += 1) ticks.push(i * step);
  return { max: niceMax, ticks };
}

/**
 * A box plot of one group's durations on a shared axis.
 * stats: {minSeconds, medianSeconds, meanSeconds, p75Seconds, p90Seconds, maxSeconds}
 * scale: from durationScale (shared by every group so they compare).
 */
export function durationBoxPlot(stats, scale, { width = 560, label = 'Durations' } = {}) {
  const height = 72;
  const left = 14;
  const right = 18;
  const mid = 24;
  const axisY = 50;
  const x = (v) => left + (Math.max(0, v) / scale.max) * (width - left - right);
  const parts = [];
  const desc =
    `${label}: min ${fmtDuration(stats.minSeconds)}, median ${fmtDuration(stats.medianSeconds)}, ` +
    `mean ${fmtDuration(stats.meanSeconds)}, 75th percentile ${fmtDuration(stats.p75Seconds)}, ` +
    `90th percentile ${fmtDuration(stats.p90Seconds)}, max ${fmtDuration(stats.maxSeconds)}`;

  // Grid and axis.
  for (const t of scale.ticks) {
    const tx = x(t);
    parts.push(s('line', { x1: tx, x2: tx, y1: 6, y2: axisY, class: 'grid' }));
    parts.push(s('line', { x1: tx, x2: tx, y1: axisY, y2: axisY + 4, class: 'axis' }));
    parts.push(
      s('text', { x: tx, y: axisY + 15, class: 'tick', 'text-anchor': 'middle' }, tickLabel(t)),
    );
  }
  parts.push(s('line', { x1: left, x2: width - right, y1: axisY, y2: axisY, class: 'axis' }));

  const minX = x(stats.minSeconds);
  const maxX = x(stats.maxSeconds);
  const medX = x(stats.medianSeconds);
  const p75X = x(stats.p75Seconds);
  const p90X = x(stats.p90Seconds);
  const meanX = x(stats.meanSeconds);
  // Whisker min–max with caps.
  parts.push(
    s('line', { x1: minX, x2: maxX, y1: mid, y2: mid, class: 'whisker' },
      s('title', {}, `min ${fmtDuration(stats.minSeconds)} – max ${fmtDuration(stats.maxSeconds)}`)),
    s('line', { x1: minX, x2: minX, y1: mid - 8, y2: mid + 8, class: 'whisker' }),
    s('line', { x1: maxX, x2: maxX, y1: mid - 8, y2: mid + 8, class: 'whisker' }),
  );
  // Box median–p75, then p75–p90.
  parts.push(
    s('rect', {
      x: medX, y: mid - 11, width: Math.max(1, p75X - medX), height: 22, class: 'box-a',
    }, s('title', {}, `median ${fmtDuration(stats.medianSeconds)} – 75th percentile ${fmtDuration(stats.p75Seconds)}`)),
    s('rect', {
      x: p75X, y: mid - 11, width: Math.max(1, p90X - p75X), height: 22, class: 'box-b',
    }, s('title', {}, `75th percentile ${fmtDuration(stats.p75Seconds)} – 90th percentile ${fmtDuration(stats.p90Seconds)}`)),
  );
  parts.push(
    s('line', { x1: medX, x2: medX, y1: mid - 14, y2: mid + 14, class: 'median' },
      s('title', {}, `median ${fmtDuration(stats.medianSeconds)}`)),
  );
  parts.push(
    s('path', {
      d: `M${meanX} ${mid - 6} L${meanX + 6} ${mid} L${meanX} ${mid + 6} L${meanX - 6} ${mid} Z`,
      class: 'mean',
    }, s('title', {}, `mean ${fmtDuration(stats.meanSeconds)}`)),
  );

  return s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart boxplot', role: 'img', 'aria-label': desc,
    preserveAspectRatio: 'xMinYMin meet',
  }, parts);
}

/** An empty axis-sized placeholder for a group without durations. */
export function emptyPlot(text, { width = 560 } = {}) {
  return s('svg', {
    viewBox: `0 0 ${width} 72`, class: 'chart boxplot empty', role: 'img', 'aria-label': text,
  },
  s('rect', { x: 14, y: 10, width: width - 32, height: 40, rx: 4, class: 'empty-box' }),
  s('text', { x: width / 2, y: 35, 'text-anchor': 'middle', class: 'empty-text' }, text));
}

/**
 * A stacked bar of the enrollments that reached `from`: reached `to` (count), still open,
 * ended early.
 */
export function outcomeBar({ count, stillOpen, endedEarly }, { width = 560 } = {}) {
  const total = count + stillOpen + endedEarly;
  const height = 14;
  const parts = [s('rect', { x: 0, y: 0, width, height, rx: 3, class: 'seg-bg' })];
  if (total > 0) {
    let at = 0;
    for (const [value, cls, name] of [
      [count, 'seg-count', 'reached both points'],
      [stillOpen, 'seg-open', 'still open'],
      [endedEarly, 'seg-early', 'ended early'],
    ]) {
      if (!value) continue;
      const w = (value / total) * width;
      parts.push(s('rect', { x: at, y: 0, width: w, height, class: cls }, s('title', {}, `${value} ${name}`)));
      at += w;
    }
  }
  return s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart outcome', role: 'img',
    'aria-label': `${count} reached both points, ${stillOpen} still open, ${endedEarly} ended early`,
    preserveAspectRatio: 'none',
  }, parts);
}

/**
 * A horizontal bar chart (the funnel of one course).
 * stages: [{key, label, value, cls}] drawn top to bottom, scaled to the largest value; each value
 * label carries data-stat="<key>" and data-value, so the drawn numbers are readable hooks.
 */
export function barChart(stages, { width = 560, label = 'Funnel' } = {}) {
  const rowH = 24;
  const top = 4;
  const labelW = 118;
  const valueW = 44;
  const barMax = width - labelW - valueW;
  const max = Math.max(1, ...stages.map((stage) => stage.value || 0));
  const height = top * 2 + stages.length * rowH;
  const parts = [];
  stages.forEach((stage, i) => {
    const y = top + i * rowH;
    const w = ((stage.value || 0) / max) * barMax;
    parts.push(
      s('text', { x: labelW - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, stage.label),
      s('rect', { x: labelW, y: y + 3, width: barMax, height: rowH - 6, class: 'bar-track' }),
      s('rect', {
        x: labelW, y: y + 3, width: Math.max(stage.value ? 2 : 0, w), height: rowH - 6,
        class: `bar ${stage.cls || ''}`,
      }, s('title', {}, `${stage.label}: ${stage.value}`)),
      s('text', {
        x: labelW + Math.max(2, w) + 6, y: y + rowH / 2 + 4, class: 'bar-value',
        'data-stat': stage.key, 'data-value': stage.value,
      }, String(stage.value)),
    );
  });
  return s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart bars', role: 'img',
    'aria-label': `${label}: ${stages.map((stage) => `${stage.label} ${stage.value}`).join(', ')}`,
  }, parts);
}

/** A small swatch for legends. */
export function swatch(cls, shape = 'rect') {
  const inner =
    shape === 'line'
      ? s('line', { x1: 0, x2: 16, y1: 6, y2: 6, class: cls })
      : shape === 'vline'
        ? s('line', { x1: 8, x2: 8, y1: 0, y2: 12, class: cls })
        : shape === 'diamond'
          ? s('path', { d: 'M8 1 L13 6 L8 11 L3 6 Z', class: cls })
          : s('rect', { x: 0, y: 1, width: 16, height: 10, class: cls });
  return s('svg', { viewBox: '0 0 16 12', width: 16, height: 12, class: 'swatch', 'aria-hidden': 'true' }, inner);
}
