// cartero web admin. Plain JavaScript, no build step, no inline code (CSP: script-src 'self').
// Every page talks to the same /v1 API as applications do, authenticated by the session
// cookie; state-changing requests echo the session's CSRF token. Text goes into the page with
// textContent only: nothing the server or a user typed is ever parsed as HTML (the e-mail
// preview is a sandboxed frame without scripts).
'use strict';

// ----- texts: [Spanish, English] for every key ----------------------------------------------
const L = {
  loading: ['Cargando…', 'Loading…'],
  nav_accounts: ['Cuentas SMTP', 'SMTP accounts'],
  nav_fallback: ['Cuenta genérica del sistema', 'System fallback account'],
  nav_messages: ['Mensajes', 'Messages'],
  nav_templates: ['Plantillas', 'Templates'],
  nav_users: ['Usuarios y tokens', 'Users and tokens'],
  nav_audit: ['Auditoría', 'Audit log'],
  main_nav: ['Navegación principal', 'Main navigation'],
  language: ['Idioma', 'Language'],
  logout: ['Cerrar sesión', 'Log out'],
  logged_as: ['{email} ({role})', '{email} ({role})'],
  login_title: ['Iniciar sesión en cartero', 'Log in to cartero'],
  email: ['Correo electrónico', 'Email'],
  password: ['Contraseña', 'Password'],
  login_button: ['Entrar', 'Log in'],
  setup_needed: ['Todavía no hay usuarios. En el servidor, cree el propietario con:', 'There are no users yet. On the server, create the owner with:'],
  setup_after: ['La orden muestra una contraseña una sola vez; úsela aquí.', 'The command prints a password once; use it here.'],
  session_expired: ['Su sesión ha terminado: vuelva a iniciar sesión.', 'Your session has ended: log in again.'],
  network_error: ['No se pudo contactar con cartero: compruebe que el servidor está en marcha y vuelva a intentarlo.', 'Could not reach cartero: check the server is running and try again.'],
  read_only: ['Solo lectura: su rol ({role}) no permite cambios aquí.', 'Read-only: your role ({role}) does not allow changes here.'],
  yes: ['Sí', 'Yes'],
  no: ['No', 'No'],
  none: ['—', '—'],
  save: ['Guardar', 'Save'],
  cancel: ['Cancelar', 'Cancel'],
  delete: ['Eliminar', 'Delete'],
  more: ['Más', 'More'],
  back: ['Volver', 'Back'],
  saved: ['Cambios guardados.', 'Changes saved.'],
  deleted: ['Eliminado.', 'Deleted.'],
  confirm_delete: ['¿Eliminar «{name}»? No se puede deshacer.', 'Delete “{name}”? This cannot be undone.'],
  not_allowed: ['Su rol no permite esta acción.', 'Your role does not allow this action.'],
  nothing_to_see: ['Su rol ({role}) sirve para que una aplicación envíe correo: no tiene páginas que ver aquí. Pida a un propietario otro rol si necesita ver la configuración o los mensajes.', 'Your role ({role}) is for an application that sends mail: it has no pages to see here. Ask an owner for another role to see the settings or the messages.'],
  // accounts
  accounts_title: ['Cuentas SMTP', 'SMTP accounts'],
  accounts_empty: ['Todavía no hay cuentas. Cree una para empezar a enviar.', 'No accounts yet. Create one to start sending.'],
  new_account: ['Nueva cuenta', 'New account'],
  col_name: ['Descripción', 'Description'],
  col_type: ['Tipo', 'Type'],
  col_priority: ['Prioridad', 'Priority'],
  col_enabled: ['Activada', 'Enabled'],
  col_last_test: ['Última prueba', 'Last test'],
  col_sent_today: ['Enviados hoy', 'Sent today'],
  col_server: ['Servidor', 'Server'],
  never_tested: ['sin probar', 'never tested'],
  test_ok: ['correcta', 'passed'],
  of_limit: ['{n} de {limit}', '{n} of {limit}'],
  enable_account: ['Activar o desactivar {name}', 'Enable or disable {name}'],
  edit_account: ['Cuenta: {name}', 'Account: {name}'],
  // account form
  preset: ['Proveedor', 'Provider'],
  preset_custom: ['— Otro servidor (manual) —', '— Other server (manual) —'],
  preset_help: ['Elegir un proveedor rellena el servidor, el puerto y el cifrado.', 'Choosing a provider fills in the server, port and encryption.'],
  preset_suggest: ['Esta dirección parece de {name}.', 'This address looks like {name}.'],
  preset_apply: ['Usar la configuración de {name}', 'Use the {name} settings'],
  f_name: ['Descripción', 'Description'],
  f_type: ['Tipo', 'Type'],
  f_type_help: ['Las aplicaciones eligen la cuenta por tipo (system, notifications, billing, marketing…).', 'Applications pick the account by type (system, notifications, billing, marketing…).'],
  f_priority: ['Prioridad', 'Priority'],
  f_priority_help: ['Entre cuentas del mismo tipo se usa primero la de mayor prioridad.', 'Among accounts of one type, the highest priority is used first.'],
  f_enabled: ['Activado', 'Enabled'],
  f_host: ['Servidor SMTP', 'SMTP server'],
  f_port: ['Puerto', 'Port'],
  f_security: ['Método de encriptación', 'Encryption method'],
  sec_none: ['Ninguno', 'None'],
  sec_starttls: ['STARTTLS', 'STARTTLS'],
  sec_tls: ['SSL/TLS', 'SSL/TLS'],
  port_proposed: ['Puerto habitual para {security}: {port}.', 'Usual port for {security}: {port}.'],
  f_username: ['Usuario', 'Username'],
  f_password: ['Contraseña', 'Password'],
  password_set: ['••• guardada — escriba para cambiarla', '••• set — type to change'],
  f_from_email: ['Correo del remitente', 'Sender email'],
  f_from_name: ['Nombre del remitente', 'Sender name'],
  f_reply_to: ['Responder a', 'Reply to'],
  f_microsoft365: ['Compatibilidad con Microsoft / Office 365', 'Microsoft / Office 365 compatibility'],
  f_microsoft365_help: ['Exige STARTTLS y envía siempre como el buzón autenticado.', 'Requires STARTTLS and always sends as the authenticated mailbox.'],
  f_tls_verify: ['Verificar el certificado del servidor', 'Verify the server certificate'],
  tls_verify_warning: ['Sin verificar el certificado, la conexión va cifrada pero nadie comprueba que llegue al servidor real. Mejor fije la huella SHA-256 del certificado.', 'Without verifying the certificate, the connection is encrypted but nobody checks it reaches the real server. Better pin the certificate’s SHA-256 fingerprint.'],
  f_tls_fingerprint: ['Huella SHA-256 fijada (opcional)', 'Pinned SHA-256 fingerprint (optional)'],
  limits: ['Límites de envío', 'Sending limits'],
  limits_help: ['Vacío = sin límite. Al alcanzarlo, los mensajes esperan o van a otra cuenta del mismo tipo.', 'Empty = no limit. When reached, messages wait or go to another account of the same type.'],
  f_per_minute: ['Por minuto', 'Per minute'],
  f_per_hour: ['Por hora', 'Per hour'],
  f_per_day: ['Por día', 'Per day'],
  imap: ['IMAP (para detectar respuestas)', 'IMAP (to detect replies)'],
  imap_enable: ['Vigilar el buzón por IMAP', 'Watch the mailbox over IMAP'],
  f_imap_host: ['Servidor IMAP', 'IMAP server'],
  f_imap_port: ['Puerto IMAP', 'IMAP port'],
  f_imap_security: ['Encriptación IMAP', 'IMAP encryption'],
  f_imap_username: ['Usuario IMAP (vacío = el mismo)', 'IMAP username (empty = the same)'],
  f_imap_password: ['Contraseña IMAP (vacía = la misma)', 'IMAP password (empty = the same)'],
  f_imap_folder: ['Carpeta', 'Folder'],
  sender: ['Remitente', 'Sender'],
  server: ['Servidor de salida', 'Outgoing server'],
  test_title: ['Probar conexión', 'Test connection'],
  test_send_to: ['Enviar el correo de prueba a', 'Send the test email to'],
  test_send_to_help: ['Vacío = al correo del remitente.', 'Empty = to the sender email.'],
  test_button: ['Probar conexión', 'Test connection'],
  test_running: ['Probando…', 'Testing…'],
  test_unsaved_note: ['La prueba usa los valores del formulario, sin guardarlos.', 'The test uses the form’s values, without saving them.'],
  diagnosis: ['Diagnóstico', 'Diagnosis'],
  fix: ['Cómo arreglarlo', 'How to fix it'],
  server_reply: ['Respuesta del servidor', 'Server reply'],
  transcript: ['Conversación SMTP', 'SMTP conversation'],
  certificate: ['Certificado', 'Certificate'],
  pin_fingerprint: ['Fijar esta huella', 'Pin this fingerprint'],
  cert_subject: ['Titular', 'Subject'],
  cert_issuer: ['Emisor', 'Issuer'],
  cert_not_after: ['Válido hasta', 'Valid until'],
  test_incomplete: ['La prueba se interrumpió antes de terminar: vuelva a intentarlo.', 'The test was cut off before it finished: try again.'],
  value_set: ['definida', 'set'],
  stage_dns: ['DNS', 'DNS'],
  stage_connect: ['Conexión TCP', 'TCP connection'],
  stage_tls: ['TLS', 'TLS'],
  stage_greeting: ['Saludo del servidor', 'Server greeting'],
  stage_ehlo: ['EHLO', 'EHLO'],
  stage_starttls: ['STARTTLS', 'STARTTLS'],
  stage_auth: ['Autenticación', 'Authentication'],
  stage_mail_from: ['MAIL FROM', 'MAIL FROM'],
  stage_rcpt_to: ['RCPT TO', 'RCPT TO'],
  stage_data: ['Mensaje de prueba', 'Test message'],
  stage_imap: ['IMAP', 'IMAP'],
  account_saved: ['Cuenta guardada. Los envíos la usan desde ya.', 'Account saved. Sending uses it from now on.'],
  // fallback
  fallback_title: ['Cuenta genérica del sistema', 'System fallback account'],
  fallback_help: ['Se usa cuando un proyecto no tiene ninguna cuenta del tipo de un mensaje.', 'Used when a project has no account of a message’s type.'],
  fallback_env: ['Ahora viene de la variable CARTERO_FALLBACK_SMTP_URL del operador. Guardar aquí la sustituye.', 'It now comes from the operator’s CARTERO_FALLBACK_SMTP_URL variable. Saving here overrides it.'],
  fallback_api: ['Definida aquí.', 'Set here.'],
  fallback_none: ['No hay cuenta genérica: los mensajes sin cuenta de su tipo esperan.', 'There is no fallback account: messages without an account of their type wait.'],
  fallback_remove: ['Quitar la cuenta genérica', 'Remove the fallback account'],
  fallback_needs: ['Cambiarla requiere el permiso defaults.manage.', 'Changing it needs the defaults.manage permission.'],
  // messages
  messages_title: ['Mensajes', 'Messages'],
  filter: ['Filtrar', 'Filter'],
  f_status: ['Estado', 'Status'],
  all: ['Todos', 'All'],
  f_to: ['Destinatario', 'Recipient'],
  f_since: ['Desde', 'Since'],
  col_date: ['Fecha', 'Date'],
  col_status: ['Estado', 'Status'],
  col_recipients: ['Destinatarios', 'Recipients'],
  col_subject: ['Asunto', 'Subject'],
  col_attempts: ['Intentos', 'Attempts'],
  messages_empty: ['No hay mensajes con estos filtros.', 'No messages match these filters.'],
  st_queued: ['en cola', 'queued'],
  st_sending: ['enviando', 'sending'],
  st_deferred: ['aplazado', 'deferred'],
  st_sent: ['enviado', 'sent'],
  st_partial: ['parcial', 'partial'],
  st_failed: ['fallido', 'failed'],
  st_cancelled: ['cancelado', 'cancelled'],
  message_title: ['Mensaje {id}', 'Message {id}'],
  message_id: ['Message-ID', 'Message-ID'],
  account: ['Cuenta', 'Account'],
  size: ['Tamaño', 'Size'],
  next_attempt: ['Próximo intento', 'Next attempt'],
  explanation: ['Explicación', 'Explanation'],
  attempts: ['Intentos', 'Attempts'],
  no_attempts: ['Aún no hubo intentos.', 'No attempts yet.'],
  attempt_n: ['Intento {n}: {outcome}', 'Attempt {n}: {outcome}'],
  duration: ['Duración', 'Duration'],
  note: ['Nota', 'Note'],
  events: ['Eventos', 'Events'],
  retry: ['Reintentar', 'Retry'],
  cancel_message: ['Cancelar envío', 'Cancel sending'],
  retried: ['Mensaje en cola de nuevo.', 'Message queued again.'],
  cancelled: ['Envío cancelado.', 'Sending cancelled.'],
  // templates
  templates_title: ['Plantillas', 'Templates'],
  new_template: ['Nueva plantilla', 'New template'],
  src_builtin: ['integrada', 'built-in'],
  src_project: ['del proyecto', 'this project’s'],
  col_source: ['Origen', 'Source'],
  edit: ['Editar', 'Edit'],
  view: ['Ver', 'View'],
  template_title: ['Plantilla: {name}', 'Template: {name}'],
  f_template_name: ['Nombre', 'Name'],
  f_template_name_help: ['Minúsculas, dígitos, _ o -. Las aplicaciones la piden por este nombre.', 'Lowercase letters, digits, _ or -. Applications ask for it by this name.'],
  lang_es: ['Español', 'Spanish'],
  lang_en: ['Inglés', 'English'],
  f_subject: ['Asunto', 'Subject'],
  f_text: ['Texto', 'Text'],
  f_html: ['HTML', 'HTML'],
  f_vars: ['Variables de ejemplo (JSON)', 'Example variables (JSON)'],
  vars_invalid: ['Las variables de ejemplo no son un objeto JSON válido.', 'The example variables are not a valid JSON object.'],
  preview: ['Vista previa', 'Preview'],
  preview_stale: ['La vista previa no está al día: corrija el error indicado.', 'The preview is out of date: fix the error shown.'],
  restore_builtin: ['Volver a la integrada', 'Restore the built-in'],
  template_saved: ['Plantilla guardada.', 'Template saved.'],
  // users and tokens
  users_title: ['Usuarios y tokens', 'Users and tokens'],
  users: ['Usuarios', 'Users'],
  tokens: ['Tokens de API', 'API tokens'],
  col_email: ['Correo', 'Email'],
  col_role: ['Rol', 'Role'],
  col_created: ['Creado', 'Created'],
  col_state: ['Estado', 'State'],
  add_user: ['Añadir usuario', 'Add user'],
  f_role: ['Rol', 'Role'],
  f_new_password: ['Contraseña (vacía = generar una)', 'Password (empty = generate one)'],
  user_created: ['Usuario creado.', 'User created.'],
  generated_password: ['Contraseña generada para {email}. Se muestra solo ahora: cópiela y entréguela de forma segura.', 'Generated password for {email}. It is shown only now: copy it and hand it over safely.'],
  create_token: ['Crear token', 'Create token'],
  f_token_name: ['Nombre (la aplicación que lo usa)', 'Name (the application that uses it)'],
  token_created: ['Token creado. Se muestra solo ahora: cópielo en la configuración de su aplicación.', 'Token created. It is shown only now: copy it into your application’s settings.'],
  revoke: ['Revocar', 'Revoke'],
  revoked: ['revocado', 'revoked'],
  active: ['activo', 'active'],
  role_owner: ['propietario', 'owner'],
  role_admin: ['administrador', 'admin'],
  role_sender: ['emisor (solo enviar)', 'sender (send only)'],
  role_viewer: ['lector (solo ver)', 'viewer (read-only)'],
  // audit
  audit_title: ['Auditoría', 'Audit log'],
  audit_empty: ['Todavía no hay cambios registrados.', 'No changes recorded yet.'],
  col_when: ['Cuándo', 'When'],
  col_who: ['Quién', 'Who'],
  col_via: ['Vía', 'Via'],
  col_action: ['Acción', 'Action'],
  col_target: ['Objeto', 'Target'],
  col_detail: ['Detalle', 'Detail'],
  via_ui: ['web', 'web'],
  via_api: ['API', 'API'],
  via_cli: ['consola', 'CLI'],
  changed: ['cambiada', 'changed'],
  removed: ['quitada', 'removed'],
  'act_account.create': ['Cuenta creada', 'Account created'],
  'act_account.update': ['Cuenta modificada', 'Account changed'],
  'act_account.delete': ['Cuenta eliminada', 'Account deleted'],
  'act_fallback.set': ['Cuenta genérica definida', 'Fallback account set'],
  'act_fallback.remove': ['Cuenta genérica quitada', 'Fallback account removed'],
  'act_template.save': ['Plantilla guardada', 'Template saved'],
  'act_template.delete': ['Plantilla eliminada', 'Template deleted'],
  'act_message.retry': ['Mensaje reintentado', 'Message retried'],
  'act_message.cancel': ['Mensaje cancelado', 'Message cancelled'],
  'act_user.create': ['Usuario creado', 'User created'],
  'act_user.delete': ['Usuario eliminado', 'User deleted'],
  'act_token.create': ['Token creado', 'Token created'],
  'act_token.revoke': ['Token revocado', 'Token revoked'],
  'act_session.login': ['Inicio de sesión', 'Logged in'],
  'act_project.create': ['Proyecto creado', 'Project created'],
  'act_key.rotate': ['Clave maestra rotada', 'Master key rotated'],
};

const LANGS = ['es', 'en'];
let lang = (() => {
  const saved = localStorage.getItem('cartero.lang');
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || 'es']) {
    const base = String(l).slice(0, 2).toLowerCase();
    if (LANGS.includes(base)) return base;
  }
  return 'es';
})();

function t(key, vars) {
  const entry = L[key];
  if (!entry) {
    console.error('cartero: missing text ' + key);
    return key;
  }
  let s = entry[lang === 'en' ? 1 : 0];
  for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v));
  return s;
}
function tOr(key, fallback, vars) { return L[key] ? t(key, vars) : fallback; }

// ----- DOM helpers ----------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (k === 'disabled') el.disabled = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}
const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const main = () => document.getElementById('main');

function fmtDate(s) {
  if (!s) return t('none');
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toLocaleString(lang === 'es' ? 'es-ES' : 'en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

function alertBox(kind, text, role) {
  return h('div', { class: 'alert ' + kind, role: role || (kind === 'error' ? 'alert' : 'status') }, text);
}

// ----- session and API ------------------------------------------------------------------
const S = { session: null, flash: null };
class Halt extends Error {}

function can(permission) {
  return !!(S.session && S.session.permissions.includes(permission));
}

async function api(method, path, body, opts) {
  opts = opts || {};
  const headers = { 'Accept-Language': lang, Accept: opts.stream ? 'application/x-ndjson' : 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (S.session && S.session.csrf) headers['X-CSRF-Token'] = S.session.csrf;
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { ok: false, status: 0, data: { error: { code: 'network', message: t('network_error') } } };
  }
  if (res.status === 401 && !opts.login) {
    S.session = null;
    renderLogin(t('session_expired'));
    throw new Halt();
  }
  if (opts.stream && res.ok) return { ok: true, status: res.status, stream: res };
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch (e) { data = null; }
  }
  return { ok: res.ok, status: res.status, data };
}

function errorOf(r) {
  return (r.data && r.data.error) || { code: 'http_' + r.status, message: t('network_error') };
}

// Shows an API error: each field's message next to its input (by data-field), the rest on top.
function showErrors(form, box, r, opts) {
  clearErrors(form, box);
  const err = errorOf(r);
  const fields = err.fields || (err.field ? [{ field: err.field, message: err.message }] : []);
  const unplaced = [];
  let first = null;
  for (const f of fields) {
    const slot = form && form.querySelector('[data-error-for="' + CSS.escape(f.field) + '"]');
    if (slot) {
      slot.textContent = f.message;
      const input = form.querySelector('[data-field="' + CSS.escape(f.field) + '"]');
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        first = first || input;
      }
    } else unplaced.push(f.message);
  }
  if (box) {
    box.replaceChildren(alertBox('error', fields.length && !unplaced.length ? err.message : [err.message].concat(unplaced.filter((m) => m !== err.message)).join(' ')));
  }
  if (first && !(opts && opts.keepFocus)) first.focus();
}
function clearErrors(form, box) {
  if (form) {
    for (const el of $$('[data-error-for]', form)) el.textContent = '';
    for (const el of $$('[aria-invalid]', form)) el.removeAttribute('aria-invalid');
  }
  if (box) box.replaceChildren();
}

// ----- layout ---------------------------------------------------------------------------
const PAGES = [
  ['accounts', 'nav_accounts', 'settings.view'],
  ['fallback', 'nav_fallback', 'settings.view'],
  ['messages', 'nav_messages', 'messages.read'],
  ['templates', 'nav_templates', 'settings.view'],
  ['users', 'nav_users', 'settings.view'],
  ['audit', 'nav_audit', 'settings.view'],
];

function langSwitch() {
  return h('div', { role: 'group', 'aria-label': t('language') },
    LANGS.map((l) => h('button', {
      type: 'button', lang: l, 'aria-pressed': String(l === lang), 'data-lang': l,
      onclick: () => { lang = l; localStorage.setItem('cartero.lang', l); document.documentElement.lang = l; route(); },
    }, l.toUpperCase())));
}

function renderHeader(current) {
  const top = document.getElementById('top');
  document.documentElement.lang = lang;
  const bar = h('div', { class: 'bar' }, h('a', { class: 'brand', href: '#/accounts' }, 'cartero'));
  if (S.session) {
    const pages = PAGES.filter((p) => can(p[2]));
    if (pages.length) {
      bar.append(h('nav', { 'aria-label': t('main_nav') }, h('ul', {},
        pages.map(([id, key]) => h('li', {}, h('a', { href: '#/' + id, 'aria-current': id === current ? 'page' : null }, t(key)))))));
    }
    bar.append(h('div', { class: 'who' },
      h('span', {}, t('logged_as', { email: S.session.user.email, role: roleName(S.session.user.role) })),
      langSwitch(),
      h('button', { type: 'button', onclick: logout }, t('logout'))));
  } else {
    bar.append(h('div', { class: 'who' }, langSwitch()));
  }
  top.replaceChildren(bar);
}

function page(current, title, ...content) {
  renderHeader(current);
  document.title = title + ' · cartero';
  const m = main();
  const flash = S.flash;
  S.flash = null;
  const kids = [h('h1', {}, title), flash ? alertBox('ok', flash) : null, content].flat(Infinity);
  m.replaceChildren(...kids.filter((k) => k !== null && k !== undefined && k !== false));
  return m;
}

function readOnlyNote() {
  return alertBox('info', t('read_only', { role: roleName(S.session.user.role) }));
}
function roleName(r) { return tOr('role_' + r, r); }

// ----- login ----------------------------------------------------------------------------
async function renderLogin(message) {
  renderHeader(null);
  document.title = t('login_title') + ' · cartero';
  const box = h('div', {}, message ? alertBox('info', message) : null);
  const form = h('form', { class: 'card login', novalidate: true },
    h('h1', {}, t('login_title')), box,
    field('email', t('email'), h('input', { type: 'email', autocomplete: 'username', required: true, autofocus: true })),
    field('password', t('password'), h('input', { type: 'password', autocomplete: 'current-password', required: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('login_button'))));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = $('button[type=submit]', form);
    button.disabled = true;
    const r = await api('POST', '/ui/login', { email: val(form, 'email'), password: val(form, 'password') }, { login: true });
    button.disabled = false;
    if (!r.ok) {
      showErrors(form, box, r);
      $('[data-field=password]', form).value = '';
      return;
    }
    S.session = r.data;
    if (!location.hash || location.hash === '#/login') location.hash = '#/accounts'; // hashchange renders
    else route();
  });
  main().replaceChildren(form);
  // Focus the email field at once, not after the session check below: moving the focus when
  // that answer arrives would send what the person (or a test) is typing into the wrong field.
  $('[data-field=email]', form).focus();
  const s = await fetch('/ui/session', { headers: { Accept: 'application/json' } }).then((r) => r.json()).catch(() => null);
  if (s && s.setup_needed) {
    box.append(alertBox('info', [t('setup_needed'), ' ', h('code', {}, 'cartero user add --email you@example.com --role owner'), ' ', t('setup_after')]));
  }
}

async function logout() {
  await api('POST', '/ui/logout').catch(() => null);
  S.session = null;
  if (location.hash === '#/login') renderLogin();
  else location.hash = '#/login'; // hashchange renders the login page
}

// ----- form helpers ---------------------------------------------------------------------
let uid = 0;
// A labelled field: the input gets data-field=path, an id, and an error slot it describes.
function field(path, label, input, help, cls) {
  const id = 'f' + (++uid) + '-' + path.replace(/[^a-z0-9]/gi, '-');
  input.id = id;
  input.setAttribute('data-field', path);
  if (input.tagName === 'INPUT' && !input.getAttribute('type')) input.type = 'text';
  const err = h('p', { class: 'field-error', id: id + '-err', 'data-error-for': path });
  const helpEl = help ? h('span', { class: 'help', id: id + '-help' }, help) : null;
  input.setAttribute('aria-describedby', [helpEl ? helpEl.id : null, err.id].filter(Boolean).join(' '));
  if (input.type === 'checkbox') {
    return h('div', { class: 'field check ' + (cls || '') }, input, h('label', { for: id }, label), helpEl, err);
  }
  return h('div', { class: 'field ' + (cls || '') }, h('label', { for: id }, label), input, helpEl, err);
}
function input(attrs) { return h('input', Object.assign({ type: 'text' }, attrs)); }
function select(options, value, attrs) {
  return h('select', attrs || {}, options.map(([v, label]) => h('option', { value: v, selected: v === value ? true : null }, label)));
}
function val(form, path) {
  const el = form.querySelector('[data-field="' + CSS.escape(path) + '"]');
  if (!el) return undefined;
  if (el.type === 'checkbox') return el.checked;
  return el.value;
}
function setVal(form, path, v) {
  const el = form.querySelector('[data-field="' + CSS.escape(path) + '"]');
  if (!el) return;
  if (el.type === 'checkbox') el.checked = !!v;
  else el.value = v === null || v === undefined ? '' : String(v);
}
// Text → JSON: empty → null; digits → number; anything else stays text so the server names the field.
function num(v) { const s = (v || '').trim(); if (!s) return null; return /^-?\d+$/.test(s) ? Number(s) : s; }
function str(v) { const s = (v || '').trim(); return s ? s : null; }
function lockForm(form) { for (const el of $$('input, select, textarea', form)) el.disabled = true; }

// A button that asks, sends DELETE to `path`, and then goes to `then` (a hash) or re-renders.
function deleteButton(label, name, path, onError, then) {
  return h('button', { type: 'button', class: 'danger', 'aria-label': label + ': ' + name, onclick: async () => {
    if (!confirm(t('confirm_delete', { name }))) return;
    const r = await api('DELETE', path);
    if (!r.ok) return onError(r);
    S.flash = t('deleted');
    if (then) location.hash = then;
    else route();
  } }, label);
}

// ----- accounts -------------------------------------------------------------------------
async function accountsPage() {
  const r = await api('GET', '/v1/accounts');
  if (!r.ok) return page('accounts', t('accounts_title'), alertBox('error', errorOf(r).message));
  const manage = can('accounts.manage');
  const list = r.data;
  const rows = list.map((a) => {
    const toggle = h('input', {
      type: 'checkbox', role: 'switch', checked: a.enabled, disabled: !manage, 'aria-label': t('enable_account', { name: a.name }),
      onchange: async (ev) => {
        const box = $('#list-status');
        const res = await api('PATCH', '/v1/accounts/' + encodeURIComponent(a.id), { enabled: ev.target.checked });
        if (!res.ok) { ev.target.checked = !ev.target.checked; showErrors(null, box, res); } else box.replaceChildren(alertBox('ok', t('saved')));
      },
    });
    const test = a.last_test
      ? h('span', {}, h('span', { class: 'badge ' + (a.last_test.ok ? 'ok' : 'bad') }, a.last_test.ok ? t('test_ok') : a.last_test.code || '✘'), ' ', h('span', { class: 'muted' }, fmtDate(a.last_test.at)))
      : h('span', { class: 'muted' }, t('never_tested'));
    const sent = a.limits.per_day ? t('of_limit', { n: a.sent_today || 0, limit: a.limits.per_day }) : String(a.sent_today || 0);
    return h('tr', {},
      h('td', {}, h('a', { href: '#/accounts/' + encodeURIComponent(a.id) }, a.name)),
      h('td', {}, a.type), h('td', {}, String(a.priority)), h('td', {}, toggle), h('td', {}, test), h('td', {}, sent),
      h('td', {}, a.host + ':' + a.port + ' ' + a.security));
  });
  page('accounts', t('accounts_title'),
    h('div', { id: 'list-status' }),
    manage ? h('p', {}, h('a', { class: 'button', href: '#/accounts/new' }, t('new_account'))) : readOnlyNote(),
    list.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['col_name', 'col_type', 'col_priority', 'col_enabled', 'col_last_test', 'col_sent_today', 'col_server'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, rows))) : h('p', { class: 'muted' }, t('accounts_empty')));
}

let presetCache = null;
async function presets() {
  if (!presetCache) {
    const r = await api('GET', '/v1/presets');
    presetCache = r.ok ? r.data : [];
  }
  return presetCache;
}

const USUAL_PORT = { none: 25, starttls: 587, tls: 465 };
const USUAL_IMAP_PORT = { none: 143, starttls: 143, tls: 993 };
const SECURITIES = () => [['none', t('sec_none')], ['starttls', t('sec_starttls')], ['tls', t('sec_tls')]];

async function accountPage(id) {
  let account = null;
  if (id !== 'new') {
    const r = await api('GET', '/v1/accounts/' + encodeURIComponent(id));
    if (!r.ok) return page('accounts', t('accounts_title'), alertBox('error', errorOf(r).message));
    account = r.data;
  }
  const editable = can('accounts.manage');
  const title = account ? t('edit_account', { name: account.name }) : t('new_account');
  const form = await accountForm({ account, editable, mode: 'account' });
  page('accounts', title, editable ? null : readOnlyNote(), form);
}

async function accountForm({ account, editable, mode, source }) {
  const a = account || { enabled: true, type: 'system', priority: 0, tls_verify: true, security: 'starttls', port: 587, limits: {} };
  const list = await presets();
  const box = h('div');
  const presetNote = h('p', { class: 'help', 'aria-live': 'polite' });
  const suggestion = h('div');
  const tlsWarning = h('div');
  const portNote = h('p', { class: 'help', 'aria-live': 'polite' });
  const form = h('form', { novalidate: true, class: 'account-form' });

  const applyPreset = (p) => {
    setVal(form, 'host', p.smtp.host);
    setVal(form, 'port', p.smtp.port);
    setVal(form, 'security', p.smtp.security);
    setVal(form, 'microsoft365', p.microsoft365);
    if (p.username_rule === 'fixed') setVal(form, 'username', p.username);
    else if (p.username_rule === 'email_address' && !val(form, 'username')) setVal(form, 'username', val(form, 'from_email'));
    if (p.imap) {
      setVal(form, 'imap.enabled', true);
      setVal(form, 'imap.host', p.imap.host);
      setVal(form, 'imap.port', p.imap.port);
      setVal(form, 'imap.security', p.imap.security);
      syncImap();
    }
    setVal(form, 'preset', p.id);
    presetNote.textContent = p.note;
    suggestion.replaceChildren();
  };

  const presetSelect = select([['', t('preset_custom')]].concat(list.map((p) => [p.id, p.name])), '', {
    onchange: () => { const p = list.find((x) => x.id === presetSelect.value); if (p) applyPreset(p); else presetNote.textContent = ''; },
  });
  const fromEmail = input({ type: 'email', value: a.from_email || '', autocomplete: 'off',
    onchange: async () => {
      const email = fromEmail.value.trim();
      suggestion.replaceChildren();
      if (!email.includes('@')) return;
      if (!val(form, 'username') && editable) {
        // A preset whose username is the address fills it when chosen; nothing to do yet.
      }
      const r = await api('GET', '/v1/presets?email=' + encodeURIComponent(email));
      if (r.ok && r.data.length && presetSelect.value !== r.data[0].id) {
        const p = r.data[0];
        suggestion.replaceChildren(alertBox('info', [t('preset_suggest', { name: p.name }), ' ',
          h('button', { type: 'button', class: 'secondary', onclick: () => { presetSelect.value = p.id; applyPreset(p); } }, t('preset_apply', { name: p.name }))]));
      }
    } });
  const security = select(SECURITIES(), a.security, {
    onchange: () => {
      const port = USUAL_PORT[security.value];
      const current = num(val(form, 'port'));
      if (current === null || Object.values(USUAL_PORT).includes(current) || current === 2525) {
        setVal(form, 'port', port);
        portNote.textContent = t('port_proposed', { security: security.selectedOptions[0].textContent, port });
      }
    },
  });
  const tlsVerify = input({ type: 'checkbox', checked: a.tls_verify, onchange: () => syncTls() });
  const syncTls = () => tlsWarning.replaceChildren(tlsVerify.checked ? '' : alertBox('warn', t('tls_verify_warning')));
  const imap = a.imap || null;
  const imapToggle = input({ type: 'checkbox', checked: !!imap, onchange: () => syncImap() });
  const imapFields = h('div', { class: 'grid' },
    field('imap.host', t('f_imap_host'), input({ value: imap ? imap.host : '', autocomplete: 'off' })),
    field('imap.port', t('f_imap_port'), input({ value: imap ? imap.port : 993, inputmode: 'numeric' })),
    field('imap.security', t('f_imap_security'), select(SECURITIES(), imap ? imap.security : 'tls', {
      onchange: (ev) => setVal(form, 'imap.port', USUAL_IMAP_PORT[ev.target.value]),
    })),
    field('imap.username', t('f_imap_username'), input({ value: imap ? imap.username || '' : '', autocomplete: 'off' })),
    field('imap.password', t('f_imap_password'), input({ type: 'password', autocomplete: 'new-password', placeholder: imap && imap.password_set ? t('password_set') : '' })),
    field('imap.folder', t('f_imap_folder'), input({ value: imap ? imap.folder : 'INBOX' })));
  const syncImap = () => { imapFields.hidden = !imapToggle.checked; };

  const isFallback = mode === 'fallback';
  form.append(
    box,
    h('fieldset', {}, h('legend', {}, t('preset')),
      field('preset', t('preset'), presetSelect, t('preset_help')), presetNote),
    h('fieldset', {}, h('legend', {}, isFallback ? t('fallback_title') : t('col_name')),
      h('div', { class: 'grid' },
        field('name', t('f_name'), input({ value: a.name || '', required: true })),
        isFallback ? null : field('type', t('f_type'), input({ value: a.type, list: 'types' }), t('f_type_help')),
        isFallback ? null : field('priority', t('f_priority'), input({ value: a.priority, inputmode: 'numeric' }), t('f_priority_help'))),
      h('datalist', { id: 'types' }, ['system', 'notifications', 'transactional', 'billing', 'marketing'].map((v) => h('option', { value: v }))),
      field('enabled', t('f_enabled'), input({ type: 'checkbox', checked: a.enabled }))),
    h('fieldset', {}, h('legend', {}, t('sender')),
      h('div', { class: 'grid' },
        field('from_email', t('f_from_email'), fromEmail),
        field('from_name', t('f_from_name'), input({ value: a.from_name || '' })),
        field('reply_to', t('f_reply_to'), input({ type: 'email', value: a.reply_to || '' }))),
      suggestion),
    h('fieldset', {}, h('legend', {}, t('server')),
      h('div', { class: 'grid' },
        field('host', t('f_host'), input({ value: a.host || '', autocomplete: 'off', spellcheck: 'false' })),
        field('security', t('f_security'), security),
        field('port', t('f_port'), input({ value: a.port || '', inputmode: 'numeric' }))),
      portNote,
      h('div', { class: 'grid' },
        field('username', t('f_username'), input({ value: a.username || '', autocomplete: 'off' })),
        field('password', t('f_password'), input({ type: 'password', autocomplete: 'new-password', placeholder: a.password_set ? t('password_set') : '' }))),
      field('microsoft365', t('f_microsoft365'), input({ type: 'checkbox', checked: a.microsoft365 }), t('f_microsoft365_help')),
      field('tls_verify', t('f_tls_verify'), tlsVerify),
      tlsWarning,
      field('tls_fingerprint', t('f_tls_fingerprint'), input({ value: a.tls_fingerprint || '', spellcheck: 'false' }))),
    h('fieldset', {}, h('legend', {}, t('limits')),
      h('p', { class: 'help' }, t('limits_help')),
      h('div', { class: 'grid' },
        field('limits.per_minute', t('f_per_minute'), input({ value: a.limits.per_minute || '', inputmode: 'numeric' })),
        field('limits.per_hour', t('f_per_hour'), input({ value: a.limits.per_hour || '', inputmode: 'numeric' })),
        field('limits.per_day', t('f_per_day'), input({ value: a.limits.per_day || '', inputmode: 'numeric' })))),
    h('fieldset', {}, h('legend', {}, t('imap')),
      field('imap.enabled', t('imap_enable'), imapToggle), imapFields));
  syncTls();
  syncImap();

  const body = () => {
    const username = str(val(form, 'username'));
    const b = {
      name: val(form, 'name').trim(),
      enabled: val(form, 'enabled'),
      host: val(form, 'host').trim(),
      port: num(val(form, 'port')),
      security: val(form, 'security'),
      auth: username ? (a.auth && a.auth !== 'none' ? a.auth : 'password') : 'none',
      username,
      from_email: val(form, 'from_email').trim(),
      from_name: str(val(form, 'from_name')),
      reply_to: str(val(form, 'reply_to')),
      microsoft365: val(form, 'microsoft365'),
      tls_verify: val(form, 'tls_verify'),
      tls_fingerprint: str(val(form, 'tls_fingerprint')),
      limits: { per_minute: num(val(form, 'limits.per_minute')), per_hour: num(val(form, 'limits.per_hour')), per_day: num(val(form, 'limits.per_day')) },
      imap: null,
    };
    if (!isFallback) {
      b.type = val(form, 'type').trim();
      const p = num(val(form, 'priority'));
      if (p !== null) b.priority = p;
    }
    if (b.port === null) delete b.port;
    if (isFallback && !b.name) delete b.name;
    const password = val(form, 'password');
    if (password) b.password = password;
    if (val(form, 'imap.enabled')) {
      b.imap = { host: val(form, 'imap.host').trim(), port: num(val(form, 'imap.port')), security: val(form, 'imap.security'),
        username: str(val(form, 'imap.username')), folder: val(form, 'imap.folder').trim() || 'INBOX' };
      const ip = val(form, 'imap.password');
      if (ip) b.imap.password = ip;
    }
    return b;
  };

  if (!editable) {
    lockForm(form);
    return form;
  }

  // Probar conexión: the form's current values, stages shown as they complete. The fallback
  // screen tests the fallback in effect (or, before there is one, the form as a new account).
  const testUrl = isFallback
    ? (source && source !== 'none' ? '/v1/system/fallback/test' : can('accounts.manage') ? '/v1/accounts/test' : null)
    : account ? '/v1/accounts/' + encodeURIComponent(account.id) + '/test' : '/v1/accounts/test';
  if (testUrl) {
    const stages = h('ol', { class: 'stages', 'aria-live': 'polite', 'aria-label': t('test_title') });
    const result = h('div', { id: 'test-result' });
    const testButton = h('button', { type: 'button', class: 'secondary', id: 'test-button' }, t('test_button'));
    const sendTo = input({ type: 'email', placeholder: a.from_email || '',
      onkeydown: (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); testButton.click(); } } });
    testButton.addEventListener('click', async () => {
      clearErrors(form, box);
      stages.replaceChildren();
      result.replaceChildren(h('p', { class: 'muted' }, t('test_running')));
      testButton.disabled = true;
      const b = body();
      const to = str(sendTo.value);
      if (to) b.send_to = to;
      const url = testUrl;
      let finished = false;
      try {
        const r = await api('POST', url, b, { stream: true });
        if (!r.stream) { result.replaceChildren(); showErrors(form, box, r); return; }
        await readLines(r.stream, (line) => {
          if (line.result || line.error) finished = true;
          if (line.stage) {
            const s = line.stage;
            stages.append(h('li', { class: s.ok ? 'ok' : 'bad', 'data-stage': s.name },
              tOr('stage_' + s.name, s.name) + ' — ' + s.ms + ' ms' + (s.detail ? ' — ' + s.detail : '')));
          } else if (line.result) {
            result.replaceChildren(testResult(line.result, form));
          } else if (line.error) {
            result.replaceChildren();
            showErrors(form, box, { data: line });
          }
        });
      } catch (e) {
        if (e instanceof Halt) throw e;
      } finally {
        testButton.disabled = false;
        if (!finished && !result.querySelector('.test-outcome') && !box.children.length) {
          result.replaceChildren(alertBox('error', t('test_incomplete')));
        }
      }
    });
    form.append(h('fieldset', { class: 'test' }, h('legend', {}, t('test_title')),
      h('p', { class: 'help' }, t('test_unsaved_note')),
      field('send_to', t('test_send_to'), sendTo, t('test_send_to_help')),
      testButton, stages, result));
  }

  const saveButton = h('button', { type: 'submit' }, t('save'));
  const actions = h('div', { class: 'actions' }, saveButton);
  if (!isFallback) actions.append(h('a', { class: 'button secondary', href: '#/accounts' }, t('cancel')));
  if (account && account.id && !isFallback) {
    actions.append(deleteButton(t('delete'), account.name, '/v1/accounts/' + encodeURIComponent(account.id),
      (r) => showErrors(form, box, r), '#/accounts'));
  }
  form.append(actions);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form, box);
    saveButton.disabled = true;
    const b = body();
    const preset = val(form, 'preset');
    let r;
    try {
      if (isFallback) r = await api('PUT', '/v1/system/fallback', b);
      else if (account) r = await api('PATCH', '/v1/accounts/' + encodeURIComponent(account.id), b);
      else r = await api('POST', '/v1/accounts', preset && !b.host ? Object.assign({ preset }, b) : b);
    } finally {
      saveButton.disabled = false;
    }
    if (!r.ok) return showErrors(form, box, r);
    S.flash = t('account_saved');
    if (isFallback) route();
    else location.hash = '#/accounts';
  });
  return form;
}

async function readLines(response, onLine) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i).trim();
      buffer = buffer.slice(i + 1);
      if (line) onLine(JSON.parse(line));
    }
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}

function testResult(r, form) {
  const out = h('div', { class: 'test-outcome', 'data-ok': String(r.ok) });
  if (r.ok) out.append(alertBox('ok', r.message));
  else if (r.diagnosis) {
    const d = r.diagnosis;
    out.append(h('div', { class: 'alert error', role: 'alert', 'data-code': d.code },
      h('p', {}, h('strong', {}, t('diagnosis') + ': '), h('code', {}, d.code)),
      h('p', {}, d.message),
      h('p', {}, h('strong', {}, t('fix') + ': '), d.fix),
      d.reply ? h('p', {}, h('strong', {}, t('server_reply') + ': '), h('code', {}, d.reply)) : null));
  } else out.append(alertBox('error', r.message));
  for (const w of r.warnings || []) out.append(alertBox('warn', w));
  if (r.certificate) {
    const c = r.certificate;
    out.append(h('details', {}, h('summary', {}, t('certificate')),
      h('dl', { class: 'kv' }, h('dt', {}, t('cert_subject')), h('dd', {}, c.subject), h('dt', {}, t('cert_issuer')), h('dd', {}, c.issuer),
        h('dt', {}, t('cert_not_after')), h('dd', {}, c.not_after), h('dt', {}, 'SHA-256'), h('dd', {}, h('code', {}, c.sha256))),
      h('button', { type: 'button', class: 'secondary', onclick: () => setVal(form, 'tls_fingerprint', c.sha256) }, t('pin_fingerprint'))));
  }
  if (r.transcript && r.transcript.length) {
    out.append(h('details', {}, h('summary', {}, t('transcript')), h('pre', { class: 'transcript' }, r.transcript.join('\n'))));
  }
  return out;
}

// ----- fallback -------------------------------------------------------------------------
async function fallbackPage() {
  const r = await api('GET', '/v1/system/fallback');
  if (!r.ok) return page('fallback', t('fallback_title'), alertBox('error', errorOf(r).message));
  const editable = can('defaults.manage');
  const source = r.data.source;
  const note = alertBox('info', source === 'environment' ? t('fallback_env') : source === 'api' ? t('fallback_api') : t('fallback_none'));
  // A fallback from the environment has its password there: saving here needs it typed.
  const account = r.data.account && source !== 'api' ? Object.assign({}, r.data.account, { password_set: false }) : r.data.account;
  const form = await accountForm({ account, editable, mode: 'fallback', source });
  const extra = [];
  if (editable && source === 'api') {
    extra.push(h('div', { class: 'actions' }, deleteButton(t('fallback_remove'), t('fallback_title'), '/v1/system/fallback',
      (r) => showErrors(form, null, r))));
  }
  page('fallback', t('fallback_title'), h('p', {}, t('fallback_help')), note,
    editable ? null : alertBox('info', [t('read_only', { role: roleName(S.session.user.role) }), ' ', t('fallback_needs')]), form, ...extra);
}

// ----- messages -------------------------------------------------------------------------
const STATUSES = ['queued', 'sending', 'deferred', 'sent', 'partial', 'failed', 'cancelled'];

async function messagesPage(params) {
  const filters = h('form', { class: 'card', role: 'search' },
    h('div', { class: 'grid' },
      field('status', t('f_status'), select([['', t('all')]].concat(STATUSES.map((s) => [s, t('st_' + s)])), params.get('status') || '')),
      field('type', t('f_type'), input({ value: params.get('type') || '' })),
      field('to', t('f_to'), input({ type: 'email', value: params.get('to') || '' })),
      field('since', t('f_since'), input({ type: 'date', value: params.get('since') || '' }))),
    h('button', { type: 'submit' }, t('filter')));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const k of ['status', 'type', 'to', 'since']) { const v = (val(filters, k) || '').trim(); if (v) q.set(k, v); }
    location.hash = '#/messages' + (q.toString() ? '?' + q : '');
  });
  const box = h('div');
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('more'));
  const table = h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ['col_date', 'col_status', 'col_type', 'col_recipients', 'col_subject', 'col_attempts'].map((k) => h('th', { scope: 'col' }, t(k))))),
    tbody));
  page('messages', t('messages_title'), filters, box, table, h('div', { class: 'actions' }, more));
  let cursor = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: '50' });
    for (const k of ['status', 'type', 'to']) if (params.get(k)) q.set(k, params.get(k));
    if (params.get('since')) q.set('since', params.get('since') + 'T00:00:00Z');
    if (cursor) q.set('cursor', cursor);
    const r = await api('GET', '/v1/messages?' + q);
    if (!r.ok) return showErrors(filters, box, r);
    for (const m of r.data.messages) {
      tbody.append(h('tr', {},
        h('td', {}, h('a', { href: '#/messages/' + encodeURIComponent(m.id) }, fmtDate(m.created_at))),
        h('td', {}, statusBadge(m.status)), h('td', {}, m.type),
        h('td', {}, m.recipients.map((x) => x.address).join(', ')), h('td', {}, m.subject || m.template || t('none')),
        h('td', {}, String(m.attempt_count))));
    }
    if (!tbody.children.length) box.replaceChildren(h('p', { class: 'muted' }, t('messages_empty')));
    cursor = r.data.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', load);
  await load();
}

function statusBadge(s) { return h('span', { class: 'badge ' + s }, tOr('st_' + s, s)); }

async function messagePage(id) {
  const r = await api('GET', '/v1/messages/' + encodeURIComponent(id));
  if (!r.ok) return page('messages', t('messages_title'), alertBox('error', errorOf(r).message));
  const m = r.data;
  const box = h('div');
  const buttons = h('div', { class: 'actions' }, h('a', { class: 'button secondary', href: '#/messages' }, t('back')));
  if (can('messages.send')) {
    if (['failed', 'partial', 'deferred'].includes(m.status)) {
      buttons.append(h('button', { type: 'button', onclick: async () => {
        const x = await api('POST', '/v1/messages/' + encodeURIComponent(id) + '/retry');
        if (!x.ok) return showErrors(null, box, x);
        S.flash = t('retried');
        route();
      } }, t('retry')));
    }
    if (['queued', 'deferred'].includes(m.status)) {
      buttons.append(h('button', { type: 'button', class: 'danger', onclick: async () => {
        const x = await api('POST', '/v1/messages/' + encodeURIComponent(id) + '/cancel');
        if (!x.ok) return showErrors(null, box, x);
        S.flash = t('cancelled');
        route();
      } }, t('cancel_message')));
    }
  }
  const kv = (k, v) => [h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? t('none') : v)];
  const attempts = (m.attempts || []).map((a, i) => h('details', { class: 'card attempt', open: i === (m.attempts.length - 1) ? true : null },
    h('summary', {}, t('attempt_n', { n: i + 1, outcome: tOr('st_' + a.outcome, a.outcome) }) + ' — ' + fmtDate(a.at)),
    h('dl', { class: 'kv' },
      kv(t('account'), a.account || a.account_id), kv(t('duration'), a.duration_ms + ' ms'),
      kv(t('server_reply'), a.reply), kv(t('diagnosis'), a.diagnosis_code), kv(t('note'), a.note)),
    a.transcript && a.transcript.length ? h('div', {}, h('h3', {}, t('transcript')), h('pre', { class: 'transcript' }, a.transcript.join('\n'))) : null));
  page('messages', t('message_title', { id: m.id }), box,
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      kv(t('col_status'), statusBadge(m.status)), kv(t('col_type'), m.type), kv(t('col_subject'), m.subject || m.template),
      kv(t('col_recipients'), m.recipients.map((x) => x.address + ' (' + tOr('st_' + x.status, x.status) + ')' + (x.reply ? ' — ' + x.reply : '')).join('; ')),
      kv(t('message_id'), m.message_id), kv(t('account'), m.account_id), kv(t('size'), m.size_bytes + ' B'),
      kv(t('col_attempts'), String(m.attempt_count)), kv(t('next_attempt'), m.next_attempt_at ? fmtDate(m.next_attempt_at) : null),
      kv(t('explanation'), m.explanation), kv(t('col_date'), fmtDate(m.created_at)))),
    buttons,
    h('h2', {}, t('attempts')), attempts.length ? attempts : h('p', { class: 'muted' }, t('no_attempts')),
    h('h2', {}, t('events')),
    h('div', { class: 'table-wrap' }, h('table', {}, h('tbody', {}, (m.events || []).map((e) =>
      h('tr', {}, h('td', {}, fmtDate(e.at)), h('td', {}, tOr('st_' + e.kind, e.kind)), h('td', {}, e.detail || '')))))));
}

// ----- templates ------------------------------------------------------------------------
async function templatesPage() {
  const r = await api('GET', '/v1/templates');
  if (!r.ok) return page('templates', t('templates_title'), alertBox('error', errorOf(r).message));
  const manage = can('accounts.manage');
  page('templates', t('templates_title'),
    manage ? h('p', {}, h('a', { class: 'button', href: '#/templates/new' }, t('new_template'))) : readOnlyNote(),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('f_template_name')), h('th', { scope: 'col' }, t('col_source')), h('th', { scope: 'col' }, t('col_subject')))),
      h('tbody', {}, r.data.map((x) => h('tr', {},
        h('td', {}, h('a', { href: '#/templates/' + encodeURIComponent(x.name) }, x.name)),
        h('td', {}, x.source === 'project' ? t('src_project') : t('src_builtin')),
        h('td', {}, ((x.body[lang] || x.body.es || x.body.en || {}).subject) || '')))))));
}

const SAMPLE_VARS = {
  name: 'Ana García', inviter: 'Luis Pérez', product: 'Acme', link: 'https://app.example.com/x',
  expires_in: '7 días', title: 'Disco casi lleno', message: 'El volumen /var está al 95 %.', severity: 'warning',
  time: '2026-11-23 10:00 UTC', account: 'SMTP principal',
};

async function templatePage(name) {
  let tpl = null;
  if (name !== 'new') {
    const r = await api('GET', '/v1/templates/' + encodeURIComponent(name));
    if (!r.ok) return page('templates', t('templates_title'), alertBox('error', errorOf(r).message));
    tpl = r.data;
  }
  const editable = can('accounts.manage');
  const box = h('div');
  const form = h('form', { novalidate: true });
  const previewBox = h('div', { class: 'preview' });
  const previewNote = h('div');
  const langSet = (code, label) => {
    const src = (tpl && tpl.body[code]) || { subject: '', text: '', html: '' };
    return h('fieldset', {}, h('legend', {}, label),
      field(code + '.subject', t('f_subject'), input({ value: src.subject, oninput: schedule })),
      field(code + '.text', t('f_text'), h('textarea', { rows: 6, value: src.text, oninput: schedule })),
      field(code + '.html', t('f_html'), h('textarea', { rows: 8, value: src.html || '', oninput: schedule })));
  };
  let timer = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(preview, 300); }
  const set = () => {
    const out = {};
    for (const code of ['es', 'en']) {
      const subject = val(form, code + '.subject'), text = val(form, code + '.text'), html = val(form, code + '.html');
      if (subject || text || html) out[code] = { subject, text, html: html ? html : null };
    }
    return out;
  };
  let previewSeq = 0;
  async function preview() {
    const seq = ++previewSeq;
    let vars;
    try { vars = JSON.parse(val(form, 'vars') || '{}'); } catch (e) { vars = undefined; }
    clearErrors(form, null);
    if (!vars || typeof vars !== 'object' || Array.isArray(vars)) {
      $('[data-error-for=vars]', form).textContent = t('vars_invalid');
      return;
    }
    const r = await api('POST', '/v1/templates/preview', { template: set(), vars });
    if (seq !== previewSeq) return; // a newer preview is on its way
    if (!r.ok) {
      showErrors(form, null, r, { keepFocus: true });
      previewNote.replaceChildren(alertBox('warn', [errorOf(r).message, ' ', t('preview_stale')]));
      return;
    }
    previewNote.replaceChildren();
    previewBox.replaceChildren(...['es', 'en'].map((code) => {
      const x = r.data[code];
      return h('div', { class: 'card', 'data-preview': code }, h('h3', {}, t('lang_' + code)),
        h('p', {}, h('strong', {}, t('f_subject') + ': '), h('span', { class: 'preview-subject' }, x.subject)),
        h('pre', { class: 'preview-text' }, x.text),
        x.html ? h('iframe', { sandbox: '', srcdoc: x.html, title: t('preview') + ' HTML ' + code, class: 'preview-html' }) : null);
    }));
  }
  form.append(box);
  if (!tpl) form.append(field('name', t('f_template_name'), input({ required: true }), t('f_template_name_help')));
  form.append(
    langSet('es', t('lang_es')), langSet('en', t('lang_en')),
    field('vars', t('f_vars'), h('textarea', { rows: 4, value: JSON.stringify(SAMPLE_VARS, null, 2), oninput: schedule })));
  const content = [editable ? null : readOnlyNote(), form, h('h2', {}, t('preview')), previewNote, previewBox];
  if (editable) {
    const actions = h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('save')), h('a', { class: 'button secondary', href: '#/templates' }, t('cancel')));
    if (tpl && tpl.source === 'project') {
      actions.append(deleteButton(t('restore_builtin'), tpl.name, '/v1/templates/' + encodeURIComponent(tpl.name),
        (r) => showErrors(form, box, r), '#/templates'));
    }
    form.append(actions);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form, box);
      const target = tpl ? tpl.name : val(form, 'name').trim();
      if (!target) {
        $('[data-error-for=name]', form).textContent = t('f_template_name_help');
        return;
      }
      const r = await api('PUT', '/v1/templates/' + encodeURIComponent(target), set());
      if (!r.ok) return showErrors(form, box, r);
      S.flash = t('template_saved');
      location.hash = '#/templates';
    });
  } else lockForm(form);
  page('templates', tpl ? t('template_title', { name: tpl.name }) : t('new_template'), ...content);
  preview();
}

// ----- users and tokens -----------------------------------------------------------------
const ROLES = ['owner', 'admin', 'sender', 'viewer'];

async function usersPage() {
  const [u, tk] = await Promise.all([api('GET', '/v1/users'), api('GET', '/v1/tokens')]);
  if (!u.ok) return page('users', t('users_title'), alertBox('error', errorOf(u).message));
  const manage = can('users.manage');
  const box = h('div');
  const onError = (r) => showErrors(null, box, r);
  const userRows = u.data.map((x) => h('tr', {}, h('td', {}, x.email), h('td', {}, roleName(x.role)), h('td', {}, fmtDate(x.created_at)),
    h('td', {}, manage && x.email !== S.session.user.email ? deleteButton(t('delete'), x.email, '/v1/users/' + encodeURIComponent(x.id), onError) : '')));
  const tokenRows = (tk.ok ? tk.data : []).map((x) => h('tr', {}, h('td', {}, x.name), h('td', {}, roleName(x.role)), h('td', {}, fmtDate(x.created_at)),
    h('td', {}, x.revoked_at ? t('revoked') : t('active')),
    h('td', {}, manage && !x.revoked_at ? deleteButton(t('revoke'), x.name, '/v1/tokens/' + encodeURIComponent(x.id), onError) : '')));
  const roleSelect = () => select(ROLES.map((r) => [r, roleName(r)]), 'viewer');

  const userForm = h('form', { class: 'card', novalidate: true, id: 'user-form' }, h('h3', {}, t('add_user')),
    h('div', { class: 'grid' },
      field('email', t('col_email'), input({ type: 'email', autocomplete: 'off' })),
      field('role', t('f_role'), roleSelect()),
      field('password', t('f_new_password'), input({ type: 'password', autocomplete: 'new-password' }))),
    h('button', { type: 'submit' }, t('add_user')));
  const userBox = h('div');
  userForm.prepend(userBox);
  userForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const b = { email: val(userForm, 'email').trim(), role: val(userForm, 'role') };
    const p = val(userForm, 'password');
    if (p) b.password = p;
    const r = await api('POST', '/v1/users', b);
    setVal(userForm, 'password', '');
    if (!r.ok) return showErrors(userForm, userBox, r);
    await usersPage();
    const shown = r.data.password
      ? [alertBox('warn', t('generated_password', { email: r.data.user.email })), h('p', { class: 'secret-once' }, r.data.password)]
      : [alertBox('ok', t('user_created'))];
    $('#users-status').replaceChildren(...shown);
  });
  const tokenForm = h('form', { class: 'card', novalidate: true, id: 'token-form' }, h('h3', {}, t('create_token')),
    h('div', { class: 'grid' }, field('name', t('f_token_name'), input({ autocomplete: 'off' })), field('role', t('f_role'), roleSelect())),
    h('button', { type: 'submit' }, t('create_token')));
  const tokenBox = h('div');
  tokenForm.prepend(tokenBox);
  tokenForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await api('POST', '/v1/tokens', { name: val(tokenForm, 'name').trim(), role: val(tokenForm, 'role') });
    if (!r.ok) return showErrors(tokenForm, tokenBox, r);
    await usersPage();
    $('#tokens-status').replaceChildren(alertBox('warn', t('token_created')), h('p', { class: 'secret-once' }, r.data.token));
  });
  const table = (heads, rows) => h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, heads.map((k) => h('th', { scope: 'col' }, k ? t(k) : '')))), h('tbody', {}, rows)));
  page('users', t('users_title'), box, manage ? null : readOnlyNote(),
    h('h2', {}, t('users')), h('div', { id: 'users-status' }),
    table(['col_email', 'col_role', 'col_created', null], userRows), manage ? userForm : null,
    h('h2', {}, t('tokens')), h('div', { id: 'tokens-status' }),
    table(['col_name', 'col_role', 'col_created', 'col_state', null], tokenRows), manage ? tokenForm : null);
}

// ----- audit ----------------------------------------------------------------------------
function describeDetail(d) {
  if (!d) return '';
  if (d.changed && typeof d.changed === 'object') {
    const parts = Object.entries(d.changed).map(([k, v]) => {
      if (v === 'changed') return k + ': ' + t('changed');
      if (v === 'set') return k + ': ' + t('value_set');
      if (v === 'removed') return k + ': ' + t('removed');
      const show = (x) => (x === null || x === undefined ? t('none') : typeof x === 'object' ? JSON.stringify(x) : String(x));
      return v && typeof v === 'object' && 'to' in v ? k + ': ' + ('from' in v ? show(v.from) + ' → ' : '') + show(v.to) : k + ': ' + show(v);
    });
    return (d.name ? d.name + ' — ' : '') + parts.join('; ');
  }
  return Object.entries(d).map(([k, v]) => k + ': ' + (v === 'set' ? t('value_set') : k === 'role' ? roleName(v) : typeof v === 'object' ? JSON.stringify(v) : v)).join('; ');
}

async function auditPage() {
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('more'));
  const box = h('div');
  page('audit', t('audit_title'), box, h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ['col_when', 'col_who', 'col_via', 'col_action', 'col_target', 'col_detail'].map((k) => h('th', { scope: 'col' }, t(k))))),
    tbody)), h('div', { class: 'actions' }, more));
  let before = null;
  const load = async () => {
    const r = await api('GET', '/v1/audit?limit=100' + (before ? '&before=' + before : ''));
    if (!r.ok) return showErrors(null, box, r);
    for (const e of r.data.entries) {
      tbody.append(h('tr', { 'data-action': e.action }, h('td', {}, fmtDate(e.at)), h('td', {}, e.actor), h('td', {}, tOr('via_' + e.via, e.via)),
        h('td', {}, tOr('act_' + e.action, e.action)), h('td', {}, e.target || ''), h('td', { class: 'detail' }, describeDetail(e.detail))));
    }
    if (!tbody.children.length) box.replaceChildren(h('p', { class: 'muted' }, t('audit_empty')));
    before = r.data.next;
    more.hidden = !before;
  };
  more.addEventListener('click', load);
  await load();
}

// ----- router ---------------------------------------------------------------------------
let firstRoute = true;
async function route() {
  if (!S.session) {
    const r = await fetch('/ui/session', { headers: { Accept: 'application/json' }, credentials: 'same-origin' }).then((x) => x.json()).catch(() => null);
    if (!r || !r.user) return renderLogin();
    S.session = r;
  }
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  try {
    switch (parts[0]) {
      case 'fallback': await fallbackPage(); break;
      case 'messages': parts[1] ? await messagePage(parts[1]) : await messagesPage(params); break;
      case 'templates': parts[1] ? await templatePage(parts[1]) : await templatesPage(); break;
      case 'users': await usersPage(); break;
      case 'audit': await auditPage(); break;
      case 'accounts': if (parts[1]) { await accountPage(parts[1]); break; } // falls through
      default:
        if (can('settings.view')) await accountsPage();
        else if (can('messages.read')) await messagesPage(params);
        else page(null, 'cartero', alertBox('info', t('nothing_to_see', { role: roleName(S.session.user.role) })));
    }
    // After a navigation, focus moves to the new content (as a page load would reset it);
    // on the first load it stays at the top, where the skip link is the first stop.
    if (!firstRoute) main().focus({ preventScroll: true });
    firstRoute = false;
  } catch (e) {
    if (!(e instanceof Halt)) throw e;
  }
}

window.addEventListener('hashchange', route);
// The skip link moves focus to the content; its #main must not reach the hash router.
document.addEventListener('click', (ev) => {
  if (ev.target && ev.target.id === 'skip') { ev.preventDefault(); main().focus(); }
});
document.addEventListener('DOMContentLoaded', route);
