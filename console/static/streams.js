// The streams list: every stream with its status, mode, shards, retention
// and live incoming rates; creating a stream (with a confirmation).
import { h, replace, fmtNum, fmtBytes, every } from './dom.js';
import { LineChart } from './chart.js';

const NAME_RE = /^[a-zA-Z0-9_.-]{1,128}$/;

export function streamsView(view, ctx, signal) {
  const tbody = h('tbody', { id: 'streams-body' });
  const empty = h('p', { class: 'muted', id: 'streams-empty', hidden: true }, 'No streams yet.');
  const chart = new LineChart({ id: 'chart-all-records', title: 'Incoming records/s, all streams', series: [{ label: 'records/s', color: '#0b63c5' }], fmt: v => fmtNum(v) });
  const rows = new Map(); // stream name → {rec, bytes, thr} cells
  replace(view,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Streams'), h('span', { class: 'spacer' }),
      h('button', { class: 'primary', id: 'create-stream', onclick: () => createStream(ctx, refresh) }, 'Create stream')),
    h('table', { id: 'streams-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', {}, 'Mode'), h('th', { class: 'num' }, 'Open shards'),
        h('th', { class: 'num' }, 'Retention'), h('th', { class: 'num' }, 'Records/s'), h('th', { class: 'num' }, 'Bytes/s'), h('th', { class: 'num' }, 'Throttled/s'))),
      tbody),
    empty, h('h2', {}, 'Throughput'), ctx.cfg.counters ? chart.el : h('p', { class: 'muted' }, 'Live counters are off on this listener.'));

  async function refresh() {
    const streams = await ctx.client.listStreams();
    const details = await mapLimit(streams, 4, st => ctx.client.call('DescribeStreamSummary', { StreamName: st.StreamName })
      .then(d => d.StreamDescriptionSummary, err => ({ error: err })));
    if (signal.aborted) return;
    rows.clear();
    replace(tbody, streams.map((st, i) => row(st, details[i], rows)));
    empty.hidden = streams.length > 0;
    if (last) fill(last);
  }

  let last = null;
  function fill(snap) {
    let total = 0;
    for (const [name, cells] of rows) {
      const rec = snap.rate('stream_incoming_records_total', name) || 0;
      total += rec;
      cells.rec.textContent = snap.hasRates ? fmtNum(rec) : '–';
      cells.bytes.textContent = snap.hasRates ? fmtBytes(snap.rate('stream_incoming_bytes_total', name) || 0) + '/s' : '–';
      cells.thr.textContent = snap.hasRates ? fmtNum(snap.rate('stream_write_provisioned_throughput_exceeded_total', name) || 0) : '–';
    }
    return total;
  }

  every(10000, signal, refresh, ctx.fail);
  const stop = ctx.counters.listen(snap => {
    last = snap;
    const total = fill(snap);
    if (snap.hasRates) chart.push([total]);
  }, ctx.fail);
  return stop;
}

function row(st, d, rows) {
  const cells = { rec: h('td', { class: 'num' }, '–'), bytes: h('td', { class: 'num' }, '–'), thr: h('td', { class: 'num' }, '–') };
  rows.set(st.StreamName, cells);
  const mode = (st.StreamModeDetails || {}).StreamMode || '–';
  const link = h('a', { href: '#/stream/' + encodeURIComponent(st.StreamName) }, st.StreamName);
  if (!d || d.error) {
    return h('tr', { 'data-stream': st.StreamName }, h('td', {}, link), h('td', { class: 'status-' + st.StreamStatus }, st.StreamStatus),
      h('td', {}, mode), h('td', { colspan: 2, class: 'error' }, d && d.error ? d.error.type : ''), cells.rec, cells.bytes, cells.thr);
  }
  return h('tr', { 'data-stream': st.StreamName },
    h('td', {}, link), h('td', { class: 'status-' + d.StreamStatus }, d.StreamStatus), h('td', {}, mode),
    h('td', { class: 'num' }, String(d.OpenShardCount)), h('td', { class: 'num' }, d.RetentionPeriodHours + ' h'),
    cells.rec, cells.bytes, cells.thr);
}

// mapLimit maps items through fn with at most n calls in flight, keeping order.
async function mapLimit(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i]); } };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

// createStream asks for the stream's name and capacity, then for a
// confirmation naming what will be created, then creates it.
async function createStream(ctx, refresh) {
  const name = h('input', { id: 'create-name', required: true, maxlength: 128, placeholder: 'my-stream', spellcheck: false });
  const mode = h('select', { id: 'create-mode' }, h('option', { value: 'PROVISIONED' }, 'Provisioned'), h('option', { value: 'ON_DEMAND' }, 'On-demand'));
  const shards = h('input', { id: 'create-shards', type: 'number', min: 1, max: 10000, value: '1' });
  const shardsRow = h('div', {}, h('label', {}, 'Shards', shards));
  mode.addEventListener('change', () => { shardsRow.hidden = mode.value !== 'PROVISIONED'; });
  const valid = () => NAME_RE.test(name.value) && (mode.value !== 'PROVISIONED' || Number(shards.value) >= 1);
  const next = await ctx.confirm({
    title: 'Create stream', action: 'Next', ready: valid,
    body: [h('div', {}, h('label', {}, 'Name', name)), h('div', {}, h('label', {}, 'Capacity mode', mode)), shardsRow,
      h('p', { class: 'muted' }, 'Names: 1 to 128 letters, digits, _ . -')],
  });
  if (!next) return;
  const provisioned = mode.value === 'PROVISIONED';
  const what = provisioned ? `provisioned, ${shards.value} shard${shards.value === '1' ? '' : 's'}` : 'on-demand';
  const sure = await ctx.confirm({
    title: 'Create this stream?', action: 'Create stream',
    body: [h('p', {}, 'Create stream ', h('b', { id: 'confirm-name' }, name.value), ` (${what}) in ${ctx.cfg.region}?`)],
  });
  if (!sure) return;
  const input = { StreamName: name.value, StreamModeDetails: { StreamMode: mode.value } };
  if (provisioned) input.ShardCount = Number(shards.value);
  try {
    await ctx.client.call('CreateStream', input);
    await refresh();
  } catch (err) {
    ctx.fail(err);
  }
}
