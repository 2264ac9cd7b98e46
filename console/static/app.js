// The console's entry point: reads the server's config, asks for credentials
// when the server verifies signatures, and routes #/ paths to the views.
import { h, replace } from './dom.js';
import { Client, credentialErrors } from './kinesis.js';
import { Counters } from './counters.js';
import { streamsView } from './streams.js';
import { streamView } from './stream.js';
import { recordsView } from './records.js';

const CREDS_KEY = 'shardlog.console.credentials';

// ctx is what every view gets.
const ctx = {
  cfg: null,
  client: null,
  counters: null,
  // fail shows an error in the banner; views use it for what the user did.
  fail(err) {
    if (err && credentialErrors.has(err.type) && ctx.client.creds) signOut();
    const b = document.getElementById('banner');
    b.textContent = err && err.message ? err.message : String(err);
    b.hidden = false;
  },
  clear() { document.getElementById('banner').hidden = true; },
  confirm,
};

// confirm shows a modal dialog and resolves true when its confirming button
// is pressed. body: nodes; ready(): whether the button is enabled, checked
// on every input.
export function confirm({ title, body = [], action, danger = false, ready = () => true }) {
  return new Promise(resolve => {
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', id: 'dialog-confirm' }, action);
    const cancel = h('button', { type: 'button', id: 'dialog-cancel' }, 'Cancel');
    const form = h('form', { method: 'dialog' }, h('h2', {}, title), body, h('div', { class: 'actions' }, cancel, ok));
    const dlg = h('dialog', { id: 'dialog' }, form);
    const update = () => { ok.disabled = !ready(); };
    form.addEventListener('input', update);
    let result = false;
    form.addEventListener('submit', e => {
      e.preventDefault();
      if (!ready()) return;
      result = true;
      dlg.close();
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    update();
    dlg.showModal();
  });
}

function storedCreds() {
  try { return JSON.parse(sessionStorage.getItem(CREDS_KEY) || 'null'); } catch { return null; }
}

function signOut() {
  sessionStorage.removeItem(CREDS_KEY);
  ctx.client.creds = null;
  route();
}

// loginView asks for an access key. A key is accepted once a call signed
// with it is not refused for its credentials: AccessDenied means the
// signature was good and the key's policies say no, which the views show.
function loginView(view) {
  const akid = h('input', { id: 'login-akid', autocomplete: 'username', required: true, spellcheck: false });
  const secret = h('input', { id: 'login-secret', type: 'password', autocomplete: 'current-password', required: true });
  const token = h('input', { id: 'login-token', autocomplete: 'off' });
  const msg = h('p', { class: 'error', id: 'login-error' });
  const form = h('form', { class: 'login' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, `This server verifies SigV4 signatures. Requests are signed in this browser for region ${ctx.cfg.region}; the key is kept in this tab's session storage only.`),
    h('label', {}, 'Access key ID', akid), h('label', {}, 'Secret access key', secret),
    h('label', {}, 'Session token (optional)', token), msg,
    h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Sign in'));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const creds = { accessKeyId: akid.value.trim(), secretAccessKey: secret.value, sessionToken: token.value.trim() || undefined };
    ctx.client.creds = creds;
    try {
      await ctx.client.call('ListStreams', { Limit: 1 });
    } catch (err) {
      if (credentialErrors.has(err.type) || !err.type) {
        ctx.client.creds = null;
        msg.textContent = err.message;
        return;
      }
    }
    sessionStorage.setItem(CREDS_KEY, JSON.stringify(creds));
    // A new key may read the counters where the last one was refused.
    ctx.counters = new Counters(ctx.cfg.counters, url => ctx.client.get(url));
    route();
  });
  replace(view, form);
  akid.focus();
  return () => {};
}

let teardown = () => {};

// route shows the view for location.hash.
function route() {
  teardown();
  ctx.clear();
  const view = document.getElementById('view');
  const signedIn = Boolean(ctx.client.creds);
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('who').textContent = `${ctx.cfg.region}${signedIn ? ' · ' + ctx.client.creds.accessKeyId : ''}`;
  if (ctx.cfg.auth && !signedIn) {
    teardown = loginView(view);
    return;
  }
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const ac = new AbortController();
  const stop = [() => ac.abort()];
  if (parts[0] === 'stream' && parts[1] && parts[2] === 'records') stop.push(recordsView(view, ctx, parts[1], ac.signal));
  else if (parts[0] === 'stream' && parts[1]) stop.push(streamView(view, ctx, parts[1], ac.signal));
  else stop.push(streamsView(view, ctx, ac.signal));
  teardown = () => stop.forEach(f => f && f());
}

async function boot() {
  const res = await fetch('config.json', { cache: 'no-store' });
  ctx.cfg = await res.json();
  ctx.client = new Client(ctx.cfg.region);
  // Signatures are refused 5 minutes off the server's clock: sign by the
  // server's time when ours is far from it (Date has whole seconds).
  const serverNow = Date.parse(res.headers.get('Date'));
  if (!Number.isNaN(serverNow) && Math.abs(serverNow - Date.now()) > 30000) ctx.client.skewMs = serverNow - Date.now();
  ctx.client.creds = ctx.cfg.auth ? storedCreds() : null;
  ctx.counters = new Counters(ctx.cfg.counters, url => ctx.client.get(url));
  document.getElementById('signout').addEventListener('click', signOut);
  document.getElementById('footer').textContent = `shardlog ${ctx.cfg.version} · region ${ctx.cfg.region}` +
    (ctx.cfg.counters ? '' : ' · live counters off on this listener (--metrics-listen)');
  window.addEventListener('hashchange', route);
  route();
}

boot().catch(err => ctx.fail(err));
