// Small DOM and formatting helpers. Every text from the server (stream names,
// tags, record data) reaches the page as a text node, never as markup.

const SVG = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k in el && !(el instanceof SVGElement) && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h builds an HTML element: h('td', {class: 'num'}, 'text', child, ...).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

export function fmtNum(n, digits = 1) {
  if (n == null || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(digits) + 'M';
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(digits) + 'k';
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

export function fmtBytes(n) {
  if (n == null || Number.isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(1)) + ' ' + units[i];
}

export function fmtTime(epochSeconds) {
  if (epochSeconds == null) return '–';
  return new Date(epochSeconds * 1000).toISOString().replace('T', ' ');
}

export const sleep = ms => new Promise(r => setTimeout(r, ms));

// every runs fn now and then ms after each run ends, until signal aborts;
// it skips runs while the page is hidden. fn's errors go to onError.
export function every(ms, signal, fn, onError) {
  const run = async () => {
    if (signal.aborted) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { if (!signal.aborted) onError(e); }
    }
    if (!signal.aborted) setTimeout(run, ms);
  };
  run();
}
