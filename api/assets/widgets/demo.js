// The demo page's script: the widgets for the token, customer and credit
// system named in this page's URL (`?token=…&customer=…&creditSystem=…`).
// The server never writes the token into the page; it is read here.
// `&children=true` adds <credits-children> (a token with descendants).
const params = new URLSearchParams(location.search);
const token = params.get('token');
const customer = params.get('customer');
const creditSystem = params.get('creditSystem') || params.get('credit-system');
const widgets = document.getElementById('widgets');
if (token && customer && creditSystem) {
  document.getElementById('usage').hidden = true;
  const tags = ['credits-balance', 'credits-usage', 'credits-history'];
  if (params.get('children') === 'true') tags.splice(1, 0, 'credits-children');
  for (const tag of tags) {
    const el = document.createElement(tag);
    el.setAttribute('token', token);
    el.setAttribute('customer', customer);
    el.setAttribute('credit-system', creditSystem);
    widgets.append(el);
  }
}
