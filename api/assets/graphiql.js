// Starts GraphiQL on /graphql's page. A file, not an inline script, so the
// page's Content-Security-Policy can allow scripts from 'self' only.
// Authenticate with the headers editor: {"Authorization": "Bearer <key>"};
// GraphiQL sends the same headers in the WebSocket's connection_init, which
// is how /graphql/ws takes a browser's credential.
(function () {
  'use strict';
  var root = document.getElementById('graphiql');
  var url = function (path, socket) {
    var u = new URL(path, window.location.origin);
    if (socket) {
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    }
    return u.toString();
  };
  var fetcher = GraphiQL.createFetcher({
    url: url(root.dataset.endpoint),
    subscriptionUrl: url(root.dataset.subscriptionEndpoint, true),
    fetch: function (input, init) {
      return fetch(input, Object.assign({}, init, { credentials: 'same-origin' }));
    },
  });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
