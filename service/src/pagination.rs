//! Keyset pagination shared by every list: bounded pages, stable order.

use uuid::Uuid;

use crate::error::Invalid;

/// The largest page any list returns.
pub const PAGE_SIZE_MAX: u64 = 200;
/// The page size when the client names none.
pub const PAGE_SIZE_DEFAULT: u64 = 50;

/// A validated page request: at most [`PAGE_SIZE_MAX`] rows after `after`
/// (exclusive) in the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// `first` must be 1..=200; `None` means [`PAGE_SIZE_DEFAULT`].
    pub fn new(first: Option<i64>, after: Option<Uuid>) -> Result<Self, Invalid> {
        let first = match first {
            None => PAGE_SIZE_DEFAULT,
            Some(n) if (1..=PAGE_SIZE_MAX as i64).contains(&n) => n as u64,
            Some(n) => {
                return Err(Invalid::new(
                    "first",
                    format!("must be between 1 and {PAGE_SIZE_MAX}, got {n}"),
                ));
            }
        };
        Ok(Self { first, after })
    }

    /// How many rows to fetch: one more than asked, to learn whether a next
    /// page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }

    /// Cuts the fetched rows to the page and says whether more follow.
    pub fn finish<T>(&self, mut rows: Vec<T>) -> Page<T> {
        let has_next_page = rows.len() as u64 > self.first;
        rows.truncate(self.first as usize);
        Page {
            items: rows,
            has_next_page,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_bounded() {
        assert_eq!(PageRequest::new(None, None).unwrap().first, 50);
        assert_eq!(PageRequest::new(Some(200), None).unwrap().first, 200);
        for bad in [0, -1, 201] {
            let err = PageRequest::new(Some(bad), None).unwrap_err();
            assert_eq!(err.field, "first");
        }
    }

    #[test]
    fn finish_reports_next_page() {
        let req = PageRequest::new(Some(2), None).unwrap();
        assert_eq!(req.fetch_limit(), 3);
        let page = req.finish(vec![1, 2, 3]);
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.has_next_page);
        let page = req.finish(vec![1, 2]);
        assert!(!page.has_next_page);
    }
}
