// The record browser: a shard and a starting position, then pages of
// records (sequence number, partition key, arrival time, data as UTF-8,
// pretty JSON or hex), or following the shard's tip live.
import { h, replace, fmtTime, sleep } from './dom.js';

const PAGE = 100;
const MAX_ROWS = 1000; // rows kept on the page while following
const MAX_SHOWN = 4096; // bytes of one record's data shown
// A shard serves 5 GetRecords calls per second; the browser stays under it.
const CALL_GAP_MS = 250;
const FOLLOW_MS = 1000;
const EMPTY_CALLS = 10; // empty pages skipped (behind the tip) per click

export function recordsView(view, ctx, stream, signal) {
  const shard = h('select', { id: 'rb-shard' });
  const position = h('select', { id: 'rb-position' },
    ['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP', 'AT_SEQUENCE_NUMBER', 'AFTER_SEQUENCE_NUMBER'].map(p => h('option', { value: p }, p)));
  const timestamp = h('input', { id: 'rb-timestamp', type: 'datetime-local', step: '0.001', hidden: true });
  const seq = h('input', { id: 'rb-seq', placeholder: 'sequence number', size: 40, hidden: true, spellcheck: false });
  const mode = h('select', { id: 'rb-mode' }, h('option', { value: 'utf8' }, 'UTF-8'), h('option', { value: 'json' }, 'JSON'), h('option', { value: 'hex' }, 'Hex'));
  const read = h('button', { class: 'primary', id: 'rb-read' }, 'Read');
  const more = h('button', { id: 'rb-next', disabled: true }, 'Next page');
  const follow = h('input', { type: 'checkbox', id: 'rb-follow' });
  const info = h('span', { class: 'muted', id: 'rb-info' });
  const tbody = h('tbody', { id: 'rb-body' });
  const scroller = h('div', { class: 'records' }, h('table', { id: 'rb-table' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Sequence number'), h('th', {}, 'Partition key'), h('th', {}, 'Arrival (UTC)'), h('th', {}, 'Data'))),
    tbody));
  position.addEventListener('change', () => {
    timestamp.hidden = position.value !== 'AT_TIMESTAMP';
    seq.hidden = !position.value.endsWith('SEQUENCE_NUMBER');
  });
  replace(view,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Records: ', h('a', { href: '#/stream/' + encodeURIComponent(stream) }, stream))),
    h('div', { class: 'toolbar' }, h('label', {}, 'Shard', shard), h('label', {}, 'Start', position), timestamp, seq, read, more,
      h('label', {}, follow, 'Follow tip live'), h('span', { class: 'spacer' }), h('label', {}, 'Data as', mode)),
    h('div', { class: 'toolbar' }, info), scroller);

  // st is the reading in progress: the iterator to continue from and the
  // records shown. gen counts readings: a newer one ends an older loop.
  const st = { iterator: null, records: [], lastSeq: null, start: null, gen: 0, count: 0 };

  async function loadShards() {
    const shards = await ctx.client.listShards(stream);
    const open = sh => !sh.SequenceNumberRange.EndingSequenceNumber;
    shards.sort((a, b) => Number(open(b)) - Number(open(a)) || a.ShardId.localeCompare(b.ShardId));
    replace(shard, shards.map(sh => h('option', { value: sh.ShardId }, `${sh.ShardId}${open(sh) ? '' : ' (closed)'}`)));
  }

  function startInput() {
    const input = { StreamName: stream, ShardId: shard.value, ShardIteratorType: position.value };
    if (position.value === 'AT_TIMESTAMP') {
      // datetime-local is local time; the API takes epoch seconds.
      const t = timestamp.value ? new Date(timestamp.value).getTime() : Date.now();
      input.Timestamp = t / 1000;
    } else if (position.value.endsWith('SEQUENCE_NUMBER')) {
      input.StartingSequenceNumber = seq.value.trim();
    }
    return input;
  }

  async function iterator(input) {
    return (await ctx.client.call('GetShardIterator', input)).ShardIterator;
  }

  // getRecords reads one page, backing off when the shard's read limit
  // answers, and renewing an iterator that expired (5 minutes) after the
  // last record shown.
  async function getRecords(gen) {
    for (;;) {
      try {
        return await ctx.client.call('GetRecords', { ShardIterator: st.iterator, Limit: follow.checked ? 1000 : PAGE });
      } catch (err) {
        if (gen !== st.gen || signal.aborted) throw err;
        if (err.type === 'ProvisionedThroughputExceededException') await sleep(1000);
        else if (err.type === 'ExpiredIteratorException') st.iterator = await iterator(st.lastSeq ?
          { StreamName: stream, ShardId: st.start.ShardId, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: st.lastSeq } : st.start);
        else throw err;
      }
    }
  }

  // page reads until it has records, reaches the tip, or has skipped
  // EMPTY_CALLS empty pages.
  async function page(gen) {
    for (let i = 0; i < EMPTY_CALLS && st.iterator; i++) {
      const doc = await getRecords(gen);
      if (gen !== st.gen || signal.aborted) return;
      st.iterator = doc.NextShardIterator || null;
      append(doc.Records || []);
      setInfo(doc);
      if ((doc.Records || []).length > 0 || doc.MillisBehindLatest === 0) return;
      await sleep(CALL_GAP_MS);
    }
  }

  function setInfo(doc) {
    more.disabled = !st.iterator;
    info.textContent = `${st.count} record(s) read` + (st.iterator ? ` · ${doc.MillisBehindLatest ?? '?'} ms behind the tip` : ' · end of shard (closed)');
  }

  function append(records) {
    for (const r of records) {
      st.count++;
      st.lastSeq = r.SequenceNumber;
      const row = { n: st.count, r, tr: h('tr', { 'data-seq': r.SequenceNumber }) };
      renderRow(row);
      st.records.push(row);
      tbody.append(row.tr);
    }
    while (st.records.length > MAX_ROWS) st.records.shift().tr.remove();
    if (follow.checked && records.length) scroller.scrollTop = scroller.scrollHeight;
  }

  function renderRow({ n, r, tr }) {
    const data = decode(r.Data);
    replace(tr, h('td', { class: 'num muted' }, String(n)), h('td', { class: 'mono' }, r.SequenceNumber),
      h('td', { class: 'mono pk' }, r.PartitionKey), h('td', { class: 'mono' }, fmtTime(r.ApproximateArrivalTimestamp)),
      h('td', { class: 'data' }, h('pre', {}, show(data, mode.value)), h('span', { class: 'muted' }, `${data.length} bytes`)));
  }

  async function run(fn) {
    try { await fn(); } catch (err) { if (!signal.aborted) ctx.fail(err); }
  }

  async function followLoop(gen) {
    while (follow.checked && gen === st.gen && !signal.aborted && st.iterator) {
      await page(gen);
      await sleep(FOLLOW_MS);
    }
  }

  read.addEventListener('click', () => run(async () => {
    ctx.clear();
    const gen = ++st.gen;
    st.records = [];
    st.count = 0;
    st.lastSeq = null;
    tbody.replaceChildren();
    st.start = startInput();
    st.iterator = await iterator(st.start);
    await page(gen);
    if (follow.checked) await followLoop(gen);
  }));
  more.addEventListener('click', () => run(() => page(st.gen)));
  follow.addEventListener('change', () => { if (follow.checked && st.iterator) run(() => followLoop(st.gen)); });
  mode.addEventListener('change', () => st.records.forEach(renderRow));

  run(loadShards);
  return () => { st.gen++; };
}

function decode(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder('utf-8');

// show renders data in the chosen form, cut at MAX_SHOWN bytes.
function show(data, mode) {
  const cut = data.length > MAX_SHOWN ? `\n… ${data.length - MAX_SHOWN} more bytes` : '';
  const part = data.subarray(0, MAX_SHOWN);
  if (mode === 'hex') return hexDump(part) + cut;
  const text = utf8.decode(part);
  if (mode === 'json' && !cut) {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return '(not JSON) ' + text; }
  }
  return text + cut;
}

function hexDump(b) {
  const lines = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = [...row].map(x => x.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map(x => (x >= 32 && x < 127 ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${off.toString(16).padStart(6, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}
