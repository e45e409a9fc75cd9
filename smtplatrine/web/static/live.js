// smtplatrine: the Live page.  Reads /live/events (server-sent events) and
// adds a row for each new session and message.  Every text goes in with
// textContent, never as markup; links are built from ids we check.
"use strict";
(function () {
  var ID = /^[0-9a-f-]{36}$/;
  var KEEP = 200;
  var state = document.getElementById("live-state");
  var sessions = document.querySelector("table.live-sessions tbody");
  var messages = document.querySelector("table.live-messages tbody");

  function when(value) {
    return (value || "").slice(0, 19).replace("T", " ");
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function linked(row, text, path, id, className) {
    var td = cell(row, "", className);
    if (ID.test(id || "")) {
      var a = document.createElement("a");
      a.href = path + id;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function put(body, row, key) {
    var old = key ? body.querySelector('tr[data-key="' + key + '"]') : null;
    if (old) {
      body.replaceChild(row, old);
    } else {
      body.insertBefore(row, body.firstChild);
      while (body.rows.length > KEEP) body.deleteRow(body.rows.length - 1);
    }
  }

  function session(data) {
    if (!ID.test(data.session_id || "")) return;
    var row = document.createElement("tr");
    row.dataset.key = data.session_id;
    linked(row, when(data.started), "/sessions/", data.session_id, "nowrap");
    cell(row, data.sensor);
    cell(row, data.client_ip);
    cell(row, data.helo, "addr");
    cell(row, data.auth_attempts || "", "num");
    cell(row, data.messages || 0, "num");
    cell(row, data.close_reason || (data.ended ? "" : "open"));
    put(sessions, row, data.session_id);
    if (data.transcript) {
      var more = document.createElement("tr");
      more.className = "transcript";
      more.dataset.key = data.session_id + "-transcript";
      var td = document.createElement("td");
      td.colSpan = 7;
      var pre = document.createElement("pre");
      pre.className = "source transcript";
      pre.textContent = data.transcript.join("\n");
      td.appendChild(pre);
      more.appendChild(td);
      var old = sessions.querySelector('tr[data-key="' + more.dataset.key + '"]');
      if (old) sessions.removeChild(old);
      sessions.insertBefore(more, row.nextSibling);
    }
  }

  function message(data) {
    var row = document.createElement("tr");
    cell(row, when(data.received), "nowrap");
    cell(row, data.sensor);
    cell(row, data.client_ip);
    cell(row, data.mail_from || "<>", "addr");
    linked(row, data.header_subject || "(no subject)", "/messages/", data.message_id,
           "subject");
    cell(row, data.size, "num");
    put(messages, row, null);
  }

  function handler(show) {
    return function (event) {
      try {
        show(JSON.parse(event.data));
      } catch (e) {
        // A row we cannot read is left out.
      }
    };
  }

  var source = new EventSource("/live/events");
  source.addEventListener("session", handler(session));
  source.addEventListener("message", handler(message));
  source.onopen = function () {
    state.textContent = "live";
    state.className = "badge ok";
  };
  source.onerror = function () {
    var closed = source.readyState === EventSource.CLOSED;
    state.textContent = closed ? "disconnected: reload the page" : "reconnecting…";
    state.className = "badge " + (closed ? "bad" : "warn");
  };
})();
