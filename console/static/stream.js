// One stream: its facts, live throughput against its limits, its shards
// over the 128-bit hash key space with their lineage, its consumers and
// tags; deleting it (with a confirmation).
import { h, s, replace, fmtNum, fmtBytes, fmtTime, every } from './dom.js';
import { LineChart } from './chart.js';

const KEYSPACE = 2n ** 128n;
const MULTIPLIER_TAG = 'shardlog.throughput-multiplier';
// Shard-level series, when the server exports them for this stream, carry
// a shard label; either name is accepted.
const SHARD_RECORDS = ['shard_incoming_records_total', 'stream_incoming_records_total'];
const SHARD_BYTES = ['shard_incoming_bytes_total', 'stream_incoming_bytes_total'];

export function streamView(view, ctx, name, signal) {
  const facts = h('dl', { class: 'facts', id: 'stream-facts' });
  const meters = h('div', { id: 'stream-meters' });
  const shardsEl = h('div', { id: 'shards' });
  const consumersEl = h('div', { id: 'consumers' });
  const tagsEl = h('div', { id: 'tags' });
  const status = h('span', { id: 'stream-status' });
  const charts = {
    records: new LineChart({ id: 'chart-records', title: 'Incoming records/s', series: [{ label: 'records/s', color: '#0b63c5' }], fmt: v => fmtNum(v) }),
    bytes: new LineChart({ id: 'chart-bytes', title: 'Incoming bytes/s', series: [{ label: 'bytes/s', color: '#0b63c5' }], fmt: v => fmtBytes(v), minTop: 1024 }),
    throttles: new LineChart({ id: 'chart-throttles', title: 'Throttled/s', fmt: v => fmtNum(v),
      series: [{ label: 'write (records)', color: '#b42318' }, { label: 'read (calls)', color: '#c2571a' }] }),
  };
  const state = { summary: null, shards: [], tags: {}, consumers: [] };
  replace(view,
    h('div', { class: 'toolbar' }, h('h1', {}, name), status, h('span', { class: 'spacer' }),
      h('button', { type: 'button', id: 'browse-records', onclick: () => { location.hash = `#/stream/${encodeURIComponent(name)}/records`; } }, 'Browse records'),
      h('button', { class: 'danger', id: 'delete-stream', onclick: () => deleteStream(ctx, name, state) }, 'Delete stream')),
    h('div', { class: 'grid' }, h('div', { class: 'card' }, h('h3', {}, 'Stream'), facts), h('div', { class: 'card' }, h('h3', {}, 'Throughput against limits'), meters)),
    h('h2', {}, 'Throughput'),
    ctx.cfg.counters ? h('div', { class: 'grid' }, charts.records.el, charts.bytes.el, charts.throttles.el) : h('p', { class: 'muted' }, 'Live counters are off on this listener.'),
    h('h2', {}, 'Shards'), shardsEl, h('h2', {}, 'Consumers'), consumersEl, h('h2', {}, 'Tags'), tagsEl);

  async function refresh() {
    const [sum, shards, tags] = await Promise.allSettled([
      ctx.client.call('DescribeStreamSummary', { StreamName: name }),
      ctx.client.listShards(name), ctx.client.listTags(name)]);
    if (signal.aborted) return;
    if (sum.status === 'rejected') throw sum.reason;
    state.summary = sum.value.StreamDescriptionSummary;
    state.tags = tags.status === 'fulfilled' ? Object.fromEntries(tags.value.map(t => [t.Key, t.Value])) : {};
    state.shards = shards.status === 'fulfilled' ? shards.value : [];
    const consumers = await ctx.client.listConsumers(state.summary.StreamARN).then(c => ({ ok: c }), err => ({ err }));
    if (signal.aborted) return;
    state.consumers = consumers.ok || [];
    replace(status, h('span', { class: 'status-' + state.summary.StreamStatus }, state.summary.StreamStatus));
    renderFacts(facts, state.summary);
    replace(shardsEl, shards.status === 'fulfilled' ? renderShards(state.shards) : errorText(shards.reason));
    replace(consumersEl, consumers.ok ? renderConsumers(consumers.ok) : errorText(consumers.err));
    replace(tagsEl, tags.status === 'fulfilled' ? renderTags(tags.value) : errorText(tags.reason));
    if (last) update(last);
  }

  let last = null;
  function update(snap) {
    const lim = perShardLimits(ctx.cfg.limits, state);
    const open = state.summary ? state.summary.OpenShardCount : 0;
    const rec = snap.rate('stream_incoming_records_total', name) || 0;
    const bytes = snap.rate('stream_incoming_bytes_total', name) || 0;
    replace(meters,
      meterRow('Write records/s', rec, lim && lim.writeRecords * open, fmtNum),
      meterRow('Write bytes/s', bytes, lim && lim.writeBytes * open, fmtBytes),
      meterRow('Read bytes/s', snap.rate('stream_get_records_bytes_total', name) || 0, lim && lim.readBytes * open, fmtBytes),
      h('p', { class: 'muted' }, lim ? `Limits: ${open} open shard(s) × ${fmtNum(lim.writeRecords)} records/s, ${fmtBytes(lim.writeBytes)}/s write, ${fmtBytes(lim.readBytes)}/s read each.` : 'Throttling is off on this server.'),
      h('p', { class: 'muted' }, `Iterator age: ${fmtNum(snap.value('stream_get_records_iterator_age_milliseconds', name) || 0)} ms · ` +
        `throttled: ${fmtNum(snap.value('stream_write_provisioned_throughput_exceeded_total', name) || 0)} write records, ` +
        `${fmtNum(snap.value('stream_read_provisioned_throughput_exceeded_total', name) || 0)} read calls (total)`));
    renderShardRates(shardsEl, snap, name, lim);
    if (!snap.hasRates) return;
    charts.records.setLimit(lim && lim.writeRecords * open, 'limit');
    charts.bytes.setLimit(lim && lim.writeBytes * open, 'limit');
    charts.records.push([rec]);
    charts.bytes.push([bytes]);
    charts.throttles.push([snap.rate('stream_write_provisioned_throughput_exceeded_total', name),
      snap.rate('stream_read_provisioned_throughput_exceeded_total', name)]);
  }

  every(5000, signal, refresh, ctx.fail);
  return ctx.counters.listen(snap => { last = snap; if (state.summary) update(snap); }, ctx.fail);
}

function errorText(err) {
  return h('p', { class: 'error' }, err && err.message ? err.message : String(err));
}

// perShardLimits are one shard's limits as storage applies them (see
// storage/admission.go limitsFor): the server's, times the stream's
// multiplier tag, and for an on-demand stream at least 4 shards' worth
// spread over its open shards.
export function perShardLimits(base, state) {
  if (!base || !state.summary) return null;
  let f = 1;
  const tag = Number(state.tags[MULTIPLIER_TAG]);
  if (tag > 0) f *= tag;
  const mode = (state.summary.StreamModeDetails || {}).StreamMode;
  const open = Math.max(state.summary.OpenShardCount, 1);
  if (mode === 'ON_DEMAND') f *= Math.max(1, 4 / open);
  return { writeRecords: base.writeRecords * f, writeBytes: base.writeBytes * f, readBytes: base.readBytes * f, readCalls: base.readCalls * f };
}

function meterRow(label, v, limit, fmt) {
  const bar = h('span', {});
  const meter = h('div', { class: 'meter' + (limit && v > limit ? ' over' : '') }, bar);
  bar.style.width = limit ? Math.min(100, 100 * v / limit).toFixed(1) + '%' : '0';
  return h('div', { class: 'toolbar' }, h('span', { class: 'muted' }, label), meter,
    h('span', { class: 'mono' }, fmt(v) + (limit ? ' / ' + fmt(limit) : '')));
}

function renderFacts(el, d) {
  const mode = (d.StreamModeDetails || {}).StreamMode || '–';
  const mon = (d.EnhancedMonitoring || []).flatMap(m => m.ShardLevelMetrics || []);
  replace(el,
    h('dt', {}, 'ARN'), h('dd', { class: 'mono' }, d.StreamARN),
    h('dt', {}, 'Status'), h('dd', {}, d.StreamStatus),
    h('dt', {}, 'Capacity mode'), h('dd', {}, mode),
    h('dt', {}, 'Open shards'), h('dd', {}, String(d.OpenShardCount)),
    h('dt', {}, 'Retention'), h('dd', {}, d.RetentionPeriodHours + ' hours'),
    h('dt', {}, 'Created'), h('dd', {}, fmtTime(d.StreamCreationTimestamp)),
    h('dt', {}, 'Encryption'), h('dd', {}, d.EncryptionType || 'NONE'),
    h('dt', {}, 'Consumers'), h('dd', {}, String(d.ConsumerCount ?? '–')),
    h('dt', {}, 'Shard-level metrics'), h('dd', {}, mon.length ? mon.join(', ') : 'none'));
}

const frac = key => Number(BigInt(key) * 1000000n / KEYSPACE) / 1e6;
const pct = key => (100 * frac(key)).toFixed(2) + '%';

// generations places each shard one row below its deepest parent; shards
// whose parents are no longer listed (trimmed) start at row 0.
function generations(shards) {
  const byId = new Map(shards.map(sh => [sh.ShardId, sh]));
  const gen = new Map();
  const of = sh => {
    if (gen.has(sh.ShardId)) return gen.get(sh.ShardId);
    gen.set(sh.ShardId, 0); // guards against a cycle in bad data
    const parents = [sh.ParentShardId, sh.AdjacentParentShardId].map(id => byId.get(id)).filter(Boolean);
    const g = parents.length ? 1 + Math.max(...parents.map(of)) : 0;
    gen.set(sh.ShardId, g);
    return g;
  };
  shards.forEach(of);
  return gen;
}

const isOpen = sh => !(sh.SequenceNumberRange && sh.SequenceNumberRange.EndingSequenceNumber);

// renderShards draws the key space: one row per generation, each shard a
// bar over its hash key range (open shards blue, closed ones grey), then
// the shard table.
function renderShards(shards) {
  const gen = generations(shards);
  const rows = Math.max(0, ...gen.values()) + 1;
  const W = 1000, RH = 26, TOP = 4;
  const bars = shards.map(sh => {
    const x0 = frac(sh.HashKeyRange.StartingHashKey) * W;
    const x1 = Number((BigInt(sh.HashKeyRange.EndingHashKey) + 1n) * 1000000n / KEYSPACE) / 1e6 * W;
    const y = TOP + gen.get(sh.ShardId) * RH;
    const open = isOpen(sh);
    return s('g', { 'data-shard': sh.ShardId },
      s('title', {}, `${sh.ShardId} (${open ? 'open' : 'closed'}): ${pct(sh.HashKeyRange.StartingHashKey)} – ${pct(sh.HashKeyRange.EndingHashKey)}`),
      s('rect', { x: x0 + 0.5, y, width: Math.max(1, x1 - x0 - 1), height: RH - 6, rx: 2, fill: open ? '#0b63c5' : '#c9d1d9' }),
      x1 - x0 > 90 && s('text', { x: x0 + 5, y: y + 14, class: open ? 'on-open' : 'on-closed' }, sh.ShardId.replace('shardId-', '')));
  });
  const axis = [0, 0.25, 0.5, 0.75, 1].map(f => s('text', { x: Math.min(W - 4, Math.max(2, f * W)), y: TOP + rows * RH + 10, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' },
    f === 0 ? '0' : f === 1 ? '2¹²⁸−1' : `${f * 100}%`));
  const svg = s('svg', { class: 'keyspace', id: 'keyspace', viewBox: `0 0 ${W} ${TOP + rows * RH + 14}`, role: 'img', 'aria-label': 'Shards over the hash key space' }, bars, axis);
  const table = h('table', { id: 'shards-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Shard'), h('th', {}, 'State'), h('th', {}, 'Parents'), h('th', {}, 'Hash keys'),
      h('th', {}, 'Sequence numbers'), h('th', { class: 'num' }, 'Incoming'))),
    h('tbody', {}, shards.map(sh => h('tr', { 'data-shard': sh.ShardId, 'data-open': String(isOpen(sh)) },
      h('td', { class: 'mono nowrap' }, sh.ShardId), h('td', {}, isOpen(sh) ? 'open' : 'closed'),
      h('td', { class: 'mono' }, [sh.ParentShardId, sh.AdjacentParentShardId].filter(Boolean).join(' + ') || '–'),
      h('td', { class: 'mono' }, `${pct(sh.HashKeyRange.StartingHashKey)} – ${pct(sh.HashKeyRange.EndingHashKey)}`),
      h('td', { class: 'mono' }, `${sh.SequenceNumberRange.StartingSequenceNumber} – ${sh.SequenceNumberRange.EndingSequenceNumber || ''}`),
      h('td', { class: 'num shard-rate' }, '–')))));
  return [svg, h('p', { class: 'muted' }, 'Rows are generations: a split or merge draws its children below its parents.'), table];
}

// renderShardRates fills the shard table's Incoming column from shard-level
// series; without them it says where they come from.
function renderShardRates(el, snap, stream, lim) {
  const name = SHARD_RECORDS.find(n => snap.shards(n, stream).length > 0);
  for (const tr of el.querySelectorAll('tr[data-shard]')) {
    const cell = tr.querySelector('.shard-rate');
    if (!name) { cell.textContent = 'n/a'; cell.title = 'no shard-level metrics for this stream (EnableEnhancedMonitoring)'; continue; }
    if (tr.dataset.open !== 'true') { cell.textContent = '–'; continue; } // a closed shard takes no writes
    const id = tr.dataset.shard;
    const rec = snap.rate(name, stream, id) || 0;
    const bytes = snap.rate(SHARD_BYTES[SHARD_RECORDS.indexOf(name)], stream, id) || 0;
    replace(cell, meterRow('', rec, lim && lim.writeRecords, fmtNum), h('span', { class: 'muted' }, fmtBytes(bytes) + '/s'));
  }
}

function renderConsumers(cs) {
  if (!cs.length) return h('p', { class: 'muted' }, 'No enhanced fan-out consumers.');
  return h('table', { id: 'consumers-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', {}, 'Registered'), h('th', {}, 'ARN'))),
    h('tbody', {}, cs.map(c => h('tr', {}, h('td', {}, c.ConsumerName), h('td', { class: 'status-' + c.ConsumerStatus }, c.ConsumerStatus),
      h('td', {}, fmtTime(c.ConsumerCreationTimestamp)), h('td', { class: 'mono' }, c.ConsumerARN)))));
}

function renderTags(tags) {
  if (!tags.length) return h('p', { class: 'muted' }, 'No tags.');
  return h('table', { id: 'tags-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', {}, 'Value'))),
    h('tbody', {}, tags.map(t => h('tr', {}, h('td', { class: 'mono' }, t.Key), h('td', { class: 'mono' }, t.Value || '')))));
}

// deleteStream asks the user to type the stream's name, and whether to
// deregister its consumers (DeleteStream refuses a stream with consumers
// otherwise), then deletes it and goes back to the list.
async function deleteStream(ctx, name, state) {
  const typed = h('input', { id: 'delete-confirm-name', spellcheck: false, autocomplete: 'off' });
  const enforce = h('input', { type: 'checkbox', id: 'delete-enforce' });
  const n = state.consumers.length;
  const sure = await ctx.confirm({
    title: 'Delete stream?', action: 'Delete stream', danger: true, ready: () => typed.value === name,
    body: [h('p', {}, 'Stream ', h('b', {}, name), ' and all its records will be deleted. This cannot be undone.'),
      n ? h('div', {}, h('label', {}, enforce, `Also deregister its ${n} consumer(s)`)) : null,
      h('div', {}, h('label', {}, 'Type the stream name to confirm', typed))],
  });
  if (!sure) return;
  try {
    await ctx.client.call('DeleteStream', { StreamName: name, EnforceConsumerDeletion: enforce.checked });
    location.hash = '#/';
  } catch (err) {
    ctx.fail(err);
  }
}
