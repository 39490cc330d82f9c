//! QR codes in images: the text of every QR code found in a PNG, JPEG or GIF
//! (decoded with the `image` crate, read with `rqrr`), so a link sent as a
//! picture ("scan with your phone") is judged like a written one.
//!
//! Bounded: images over [`MAX_IMAGE_BYTES`] or [`MAX_PIXELS`] are skipped
//! (decoder limits are set before any pixel is allocated), large images are
//! scaled down to [`MAX_SIDE`] before the search, at most [`MAX_CODES`]
//! codes per image are read. Hostile bytes give no codes, never a panic.
//! Never fetches anything and never looks at images of other formats.

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Largest encoded image looked at.
const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest decoded image (width × height).
const MAX_PIXELS: u64 = 16_000_000;
/// Longest side searched; larger images are scaled down first.
const MAX_SIDE: u32 = 1200;
/// Codes read per image.
const MAX_CODES: usize = 8;
/// Characters kept of a decoded code.
const MAX_TEXT: usize = 4096;

/// The image format of `data` by its signature, for the formats we read.
pub(crate) fn format(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if data.starts_with(b"\xff\xd8\xff") {
        Some(ImageFormat::Jpeg)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else {
        None
    }
}

/// The texts of the QR codes in `data` (empty when it is no readable image).
pub(crate) fn decode(data: &[u8]) -> Vec<String> {
    let Some(fmt) = format(data) else {
        return Vec::new();
    };
    if data.len() > MAX_IMAGE_BYTES {
        return Vec::new();
    }
    let Some(img) = load(data, fmt) else {
        return Vec::new();
    };
    let img = if img.width().max(img.height()) > MAX_SIDE {
        img.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        img
    };
    let luma = img.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let mut out = Vec::new();
    for grid in prepared.detect_grids().into_iter().take(MAX_CODES) {
        if let Ok((_, text)) = grid.decode() {
            out.push(text.chars().take(MAX_TEXT).collect());
        }
    }
    out
}

fn load(data: &[u8], fmt: ImageFormat) -> Option<DynamicImage> {
    let mut reader = ImageReader::with_format(std::io::Cursor::new(data), fmt);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    limits.max_image_width = Some(8000);
    limits.max_image_height = Some(8000);
    reader.limits(limits);
    let img = reader.decode().ok()?;
    (u64::from(img.width()) * u64::from(img.height()) <= MAX_PIXELS).then_some(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Junk and truncated images give nothing and never panic (a real
    /// code is read in the `urls` check's tests, from a fixture).
    #[test]
    fn hostile_bytes_give_no_codes() {
        assert!(decode(b"not an image").is_empty());
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xff\xff\xff").is_empty());
        assert!(decode(b"GIF89a\x10\x00").is_empty());
        assert!(decode(b"\xff\xd8\xff\xe0garbage").is_empty());
    }
}
