//! Images for the model: [`sniff`] tells a JPEG, PNG, GIF or WebP by its first bytes (what a
//! sender calls it does not matter), and [`to_block`] turns one into an
//! [`ImageBlock`], scaled down with the `image` crate when its long edge is over
//! [`MAX_IMAGE_EDGE`] or its base64 over [`MAX_IMAGE_BASE64`]. An image within the limits is
//! passed on byte for byte. Decoding is bounded (dimensions and allocation), so a
//! decompression bomb is an error, not an out-of-memory.

use std::io::Cursor;

use base64::Engine;
use common::attach::{ImageBlock, MAX_IMAGE_BASE64, MAX_IMAGE_EDGE};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Largest width or height decoded.
const MAX_DECODE_EDGE: u32 = 20_000;
/// Most memory one decode may take.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// The media type of an image the model takes, judged from its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Length of the base64 text of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut r = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_EDGE);
    limits.max_image_height = Some(MAX_DECODE_EDGE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    r.limits(limits);
    r
}

/// An image as sent, or how it was scaled.
#[derive(Debug)]
pub struct Prepared {
    /// The block for the prompt.
    pub block: ImageBlock,
    /// `(width, height)` before and after, when it was scaled.
    pub scaled: Option<((u32, u32), (u32, u32))>,
}

/// `bytes` (of media type `media`, see [`sniff`]) as an image block, scaled down when over
/// the limits. CPU-bound: call it on a blocking thread.
pub fn to_block(bytes: &[u8], media: &'static str) -> Result<Prepared, String> {
    let format = ImageFormat::from_mime_type(media)
        .ok_or_else(|| format!("image type {media} is not supported"))?;
    let (w, h) = reader(bytes, format)
        .into_dimensions()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    let engine = base64::engine::general_purpose::STANDARD;
    if w.max(h) <= MAX_IMAGE_EDGE && base64_len(bytes.len()) <= MAX_IMAGE_BASE64 {
        return Ok(Prepared {
            block: ImageBlock {
                media_type: media.to_owned(),
                data: engine.encode(bytes),
            },
            scaled: None,
        });
    }
    let img = reader(bytes, format)
        .decode()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    let mut edge = MAX_IMAGE_EDGE;
    loop {
        let small = img.resize(edge, edge, image::imageops::FilterType::Triangle);
        let (out, out_media) = encode(&small)?;
        if base64_len(out.len()) <= MAX_IMAGE_BASE64 || edge <= 64 {
            if base64_len(out.len()) > MAX_IMAGE_BASE64 {
                return Err(format!(
                    "the image stays over the {MAX_IMAGE_BASE64}-byte limit even scaled down"
                ));
            }
            return Ok(Prepared {
                block: ImageBlock {
                    media_type: out_media.to_owned(),
                    data: engine.encode(&out),
                },
                scaled: Some(((w, h), (small.width(), small.height()))),
            });
        }
        edge = edge * 3 / 4;
    }
}

/// PNG when the image has transparency, else JPEG.
fn encode(img: &DynamicImage) -> Result<(Vec<u8>, &'static str), String> {
    let mut out = Cursor::new(Vec::new());
    let fail = |e: image::ImageError| format!("cannot scale the image: {e}");
    if img.color().has_alpha() {
        img.write_to(&mut out, ImageFormat::Png).map_err(fail)?;
        Ok((out.into_inner(), "image/png"))
    } else {
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        rgb.write_with_encoder(enc).map_err(fail)?;
        Ok((out.into_inner(), "image/jpeg"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn small_images_pass_unchanged_and_large_ones_are_scaled() {
        let small = png(40, 30);
        assert_eq!(sniff(&small), Some("image/png"));
        let p = to_block(&small, "image/png").expect("small");
        assert!(p.scaled.is_none());
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(engine.decode(&p.block.data).expect("b64"), small);

        let big = png(3000, 1000);
        let p = to_block(&big, "image/png").expect("big");
        assert_eq!(p.scaled, Some(((3000, 1000), (1568, 523))));
        assert_eq!(p.block.media_type, "image/jpeg");
        let out = engine.decode(&p.block.data).expect("b64");
        let dims = image::load_from_memory(&out).expect("decodes");
        assert_eq!((dims.width(), dims.height()), (1568, 523));
    }

    #[test]
    fn not_images_and_broken_images_are_told() {
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        let e = to_block(b"\x89PNG\r\n\x1a\nbroken", "image/png").expect_err("broken");
        assert!(e.contains("cannot read"), "{e}");
    }
}
