/**
 * bench/coldstart chart: grouped horizontal bar charts as plain SVG 1.1 text, no dependencies.
 *
 * One group per row block (an image, a metric), one bar per series (a mode: "OCIv1",
 * "Nydus cold", ...). A series keeps its colour in every group, and charts that list their series
 * in the same order share colours. Bars carry their value (and note); a null value is drawn as a
 * "not run" note instead of a bar.
 */

export interface Bar {
  label: string;
  value: number | null;
  note?: string;
}

export interface BarGroup {
  label: string;
  bars: Bar[];
}

export interface BarChartOptions {
  title: string;
  /** Unit of the values, shown on the axis and after each value, e.g. "s" or "MiB". */
  unit: string;
  groups: BarGroup[];
}

// Colour-blind-safe (Okabe-Ito), in the order series first appear.
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const WIDTH = 900;
const PAD = 16;
const BAR_H = 18;
const BAR_GAP = 4;
const GROUP_GAP = 18;
const TITLE_H = 26;
const LEGEND_ROW_H = 20;
const AXIS_H = 24;
const FONT_PX = 12;

export function barChartSvg(o: BarChartOptions): string {
  const series = seriesColours(o.groups);
  const legend = legendLayout([...series.keys()], WIDTH - 2 * PAD);
  const labelW = Math.ceil(Math.max(40, ...o.groups.map((g) => textWidth(g.label, FONT_PX, true)))) + 12;
  const values = o.groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v): v is number => v !== null);
  const axis = niceAxis(Math.max(0, ...values));
  const plotX = PAD + labelW;
  const plotW = plotWidth(o, axis, WIDTH - PAD - plotX);
  const plotY = PAD + TITLE_H + legend.height + 8;
  const groupH = (g: BarGroup) => Math.max(1, g.bars.length) * (BAR_H + BAR_GAP) - BAR_GAP;
  const plotH = o.groups.reduce((h, g) => h + groupH(g) + GROUP_GAP, GROUP_GAP / 2);
  const height = plotY + plotH + AXIS_H + PAD;

  const x = (v: number) => plotX + (Math.max(0, v) / axis.max) * plotW;

  const parts: string[] = [
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    text(PAD, PAD + 16, o.title, { size: 16, weight: 'bold' }),
    ...legend.items.map((it) => legendItem(it, PAD, PAD + TITLE_H, series.get(it.label)!)),
    ...axisParts(axis, x, plotY, plotH, o.unit),
  ];
  let y = plotY + GROUP_GAP / 2;
  for (const g of o.groups) {
    parts.push(text(plotX - 10, y + groupH(g) / 2 + 4, g.label, { anchor: 'end', weight: 'bold' }));
    g.bars.forEach((b, i) => parts.push(barParts(b, y + i * (BAR_H + BAR_GAP), x, series.get(b.label)!, o.unit)));
    y += groupH(g) + GROUP_GAP;
  }
  parts.push(line(plotX, plotY, plotX, plotY + plotH, '#333333'));

  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${WIDTH}" height="${height}" ` +
    `viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}" font-size="${FONT_PX}">\n` +
    `<title>${esc(o.title)}</title>\n${parts.join('\n')}\n</svg>\n`
  );
}

/** The widest plot that still leaves room for every bar's value label after its end (and the last tick label). */
function plotWidth(o: BarChartOptions, axis: Axis, room: number): number {
  let w = room - textWidth(`${formatTick(axis.max, axis.step)} ${o.unit}`, 11) / 2;
  for (const g of o.groups) {
    for (const b of g.bars) {
      if (b.value === null || b.value <= 0) continue;
      w = Math.min(w, (room - textWidth(barText(b, o.unit), 11) - 8) / (b.value / axis.max));
    }
  }
  return Math.max(100, w);
}

function seriesColours(groups: BarGroup[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const g of groups) for (const b of g.bars) if (!m.has(b.label)) m.set(b.label, PALETTE[m.size % PALETTE.length]!);
  return m;
}

function barParts(b: Bar, y: number, x: (v: number) => number, colour: string, unit: string): string {
  const x0 = x(0);
  const tip = `<title>${esc(`${b.label}: ${barText(b, unit)}`)}</title>`;
  if (b.value === null) {
    // An empty dashed box where the bar would start, so the gap reads as missing, not as zero.
    return (
      `<g>${tip}<rect x="${x0}" y="${y + 0.5}" width="24" height="${BAR_H - 1}" fill="none" stroke="${colour}" ` +
      `stroke-dasharray="3,2"/>` + text(x0 + 30, y + BAR_H / 2 + 4, barText(b, unit), { size: 11, fill: '#666666', italic: true }) + `</g>`
    );
  }
  const w = Math.max(x(b.value) - x0, b.value > 0 ? 1 : 0);
  return (
    `<g>${tip}<rect x="${x0}" y="${y}" width="${r(w)}" height="${BAR_H}" fill="${colour}"/>` +
    text(x0 + w + 4, y + BAR_H / 2 + 4, barText(b, unit), { size: 11 }) + `</g>`
  );
}

function barText(b: Bar, unit: string): string {
  if (b.value === null) return b.note ? `not run (${b.note})` : 'not run';
  const v = `${formatValue(b.value)}${unit ? ` ${unit}` : ''}`;
  return b.note ? `${v} · ${b.note}` : v;
}

export function formatValue(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000 || Number.isInteger(v)) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

interface Axis {
  max: number;
  step: number;
}

/** 0 to a round maximum in 1-2-2.5-5 steps, about five ticks. */
export function niceAxis(max: number): Axis {
  if (!(max > 0)) return { max: 1, step: 0.2 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

function axisParts(axis: Axis, x: (v: number) => number, plotY: number, plotH: number, unit: string): string[] {
  const out: string[] = [];
  const bottom = plotY + plotH;
  const n = Math.round(axis.max / axis.step);
  for (let i = 0; i <= n; i++) {
    const v = i * axis.step;
    const px = r(x(v));
    if (i > 0) out.push(line(px, plotY, px, bottom, '#e3e3e3'));
    out.push(line(px, bottom, px, bottom + 5, '#333333'));
    const label = formatTick(v, axis.step) + (unit && v > 0 ? ` ${unit}` : '');
    out.push(text(px, bottom + 18, label, { anchor: 'middle', size: 11 }));
  }
  out.push(line(x(0), bottom, x(axis.max), bottom, '#333333'));
  return out;
}

function formatTick(v: number, step: number): string {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0));
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

interface LegendItem {
  label: string;
  dx: number;
  dy: number;
}

function legendLayout(labels: string[], width: number): { items: LegendItem[]; height: number } {
  const items: LegendItem[] = [];
  let dx = 0;
  let dy = 0;
  for (const label of labels) {
    const w = 14 + 6 + textWidth(label, FONT_PX) + 18;
    if (dx > 0 && dx + w > width) {
      dx = 0;
      dy += LEGEND_ROW_H;
    }
    items.push({ label, dx, dy });
    dx += w;
  }
  return { items, height: labels.length ? dy + LEGEND_ROW_H : 0 };
}

function legendItem(it: LegendItem, x: number, y: number, colour: string): string {
  return (
    `<rect x="${r(x + it.dx)}" y="${y + it.dy + 2}" width="14" height="14" fill="${colour}"/>` +
    text(x + it.dx + 20, y + it.dy + 13, it.label)
  );
}

interface TextStyle {
  size?: number;
  weight?: 'bold';
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
  italic?: boolean;
}

function text(x: number, y: number, s: string, st: TextStyle = {}): string {
  const attrs = [
    `x="${r(x)}"`,
    `y="${r(y)}"`,
    st.size ? `font-size="${st.size}"` : '',
    st.weight ? `font-weight="${st.weight}"` : '',
    st.anchor && st.anchor !== 'start' ? `text-anchor="${st.anchor}"` : '',
    st.italic ? `font-style="italic"` : '',
    `fill="${st.fill ?? '#222222'}"`,
  ].filter(Boolean);
  return `<text ${attrs.join(' ')}>${esc(s)}</text>`;
}

function line(x1: number, y1: number, x2: number, y2: number, stroke: string): string {
  return `<line x1="${r(x1)}" y1="${r(y1)}" x2="${r(x2)}" y2="${r(y2)}" stroke="${stroke}" stroke-width="1"/>`;
}

/** Rough width of a text in DejaVu Sans (the widest of the fonts listed), for layout only. */
function textWidth(s: string, px: number, bold = false): number {
  return s.length * px * (bold ? 0.68 : 0.62);
}

const r = (v: number) => Math.round(v * 10) / 10;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
